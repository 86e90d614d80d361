-- How often a run's worker died while training it (its lease expired). A run that keeps
-- killing its worker (say, out of memory) fails with an explanation instead of crashing
-- every restart.
ALTER TABLE runs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
