-- Each training node reports how many SST-2 training sentences it has (NULL: it has no
-- usable training data), so that a web node without the data knows whether runs can start.
ALTER TABLE training_nodes ADD COLUMN train_examples BIGINT;
