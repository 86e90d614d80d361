-- A student's "I've got it" counts once per lesson; visitors who have not joined a class
-- still count each click (student_id NULL, and NULLs never conflict).
-- The PostgreSQL twin of ../0004_checkins_per_student.sql.
ALTER TABLE lesson_checkins ADD COLUMN student_id BIGINT REFERENCES students (id) ON DELETE CASCADE;

CREATE UNIQUE INDEX lesson_checkins_once_per_student ON lesson_checkins (lesson_slug, student_id);
