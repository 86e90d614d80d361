-- The jigsaw classroom: instructors, their classes, teams with expert topics, students,
-- quiz answers with grades, and login sessions.

CREATE TABLE instructors (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE classes (
    id INTEGER PRIMARY KEY,
    instructor_id INTEGER NOT NULL REFERENCES instructors (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    join_code TEXT NOT NULL UNIQUE,
    phase TEXT NOT NULL DEFAULT 'study'
        CHECK (phase IN ('study', 'teach', 'quiz', 'competition')),
    quiz_closed BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE teams (
    id INTEGER PRIMARY KEY,
    class_id INTEGER NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- The lesson slug this team studies and then teaches; NULL until assigned.
    topic_slug TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (class_id, name)
);

CREATE TABLE students (
    id INTEGER PRIMARY KEY,
    class_id INTEGER NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
    team_id INTEGER NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (class_id, display_name)
);

CREATE TABLE quiz_answers (
    id INTEGER PRIMARY KEY,
    student_id INTEGER NOT NULL REFERENCES students (id) ON DELETE CASCADE,
    -- `<lesson slug>-<question number>`, e.g. `hyperparameters-1`.
    question_key TEXT NOT NULL,
    -- The handed-in answer, which is what gets graded; NULL until the first submit.
    answer TEXT,
    submitted_at TEXT,
    -- Work in progress, kept across reloads; NULL once submitted.
    draft TEXT,
    draft_saved_at TEXT,
    points DOUBLE PRECISION,
    feedback TEXT,
    -- 'auto' for machine-graded items, 'instructor' once a person graded it.
    graded_by TEXT,
    graded_at TEXT,
    UNIQUE (student_id, question_key)
);

CREATE INDEX quiz_answers_by_question ON quiz_answers (question_key);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    -- Unix seconds.
    expires_at BIGINT NOT NULL
);
