-- A password reset ends the account's sessions: each session remembers the epoch it
-- was signed in under, and `jigsaw-lab instructor add` on an existing account moves the
-- epoch on, so older sessions no longer count as signed in.
ALTER TABLE instructors ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
