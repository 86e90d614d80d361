-- Fine-tuning runs: a durable queue (one row per run) and each run's event history.

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    class_id INTEGER NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
    team_id INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    -- Display name of the student who submitted it.
    submitted_by TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'diverged', 'cancelled')),
    -- The run form's settings as JSON.
    settings TEXT NOT NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    -- The instructor's "run next": higher goes first, before the round robin.
    priority BIGINT NOT NULL DEFAULT 0,
    -- Increases with every claim; a team's largest value says when it last got the GPU,
    -- which makes the queue round robin across teams.
    claim_order BIGINT,
    lease_owner TEXT,
    -- Unix seconds; a running run whose lease expired is requeued and resumes.
    lease_expires_at BIGINT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    started_at TEXT,
    finished_at TEXT,
    -- Why it failed, diverged or was cancelled.
    message TEXT,
    validation_accuracy DOUBLE PRECISION,
    private_accuracy DOUBLE PRECISION
);

CREATE INDEX runs_by_status ON runs (status, id);
CREATE INDEX runs_by_team ON runs (team_id, id);

CREATE TABLE run_events (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    -- 1, 2, 3, … per run, with no gaps: the SSE event id.
    seq BIGINT NOT NULL,
    -- The trainer's event as JSON.
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

ALTER TABLE classes ADD COLUMN private_board_revealed BOOLEAN NOT NULL DEFAULT FALSE;
