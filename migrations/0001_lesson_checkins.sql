-- Students' "I've got it" check-ins per lesson.
CREATE TABLE lesson_checkins (
    id INTEGER PRIMARY KEY,
    lesson_slug TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX lesson_checkins_by_slug ON lesson_checkins (lesson_slug);
