-- The nodes that train runs: each declares its device and training slots when it starts,
-- renews `last_seen` (Unix seconds) while it runs and removes its row when it stops. The
-- run form's estimates use the speeds measured on the devices of the nodes seen lately.
CREATE TABLE training_nodes (
    name TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    slots BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
