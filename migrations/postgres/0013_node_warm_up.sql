-- While a GPU training node compiles its kernels after its start (its warm-up), it claims
-- no run: it reports since when (Unix seconds), so that pages can say what a queued run
-- waits for. NULL: the node claims runs.
ALTER TABLE training_nodes ADD COLUMN warming_up_since BIGINT;
