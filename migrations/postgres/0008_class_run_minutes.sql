-- The longest a run of this class trains, in minutes, set by its instructor: a run stops
-- there and finishes with its best model, so one run cannot hold the training slot all day.
ALTER TABLE classes ADD COLUMN run_minutes BIGINT NOT NULL DEFAULT 60;
