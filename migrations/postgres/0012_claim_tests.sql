-- Claim tests: the runs an instructor queues to test a lesson's claim. They belong to a
-- hidden team of the class (on no team list, board or standings) and name their claim and
-- their arm of the test.
ALTER TABLE teams ADD COLUMN hidden BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE runs ADD COLUMN claim TEXT;
ALTER TABLE runs ADD COLUMN claim_arm TEXT;
CREATE INDEX runs_by_claim ON runs (class_id, claim, claim_arm);
