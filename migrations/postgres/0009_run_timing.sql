-- How long each run was expected to take when it was queued, how long it trained, and the
-- speed it measured (training sentences per second of the default model) on which device:
-- the run form's estimates come from the class machine's own runs, and the instructor sees
-- how far off they were.
ALTER TABLE runs ADD COLUMN estimated_seconds DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN trained_seconds DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN reference_speed DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN device TEXT;
