-- Each stored run event names its kind (the JSON's "type": step, eval, attention, ...) in a
-- column of its own, so that the curves and streams select events by kind without
-- matching text inside the JSON.
ALTER TABLE run_events ADD COLUMN kind TEXT NOT NULL DEFAULT '';

UPDATE run_events SET kind = COALESCE(json_extract(payload, '$.type'), '');

CREATE INDEX run_events_by_kind ON run_events (run_id, kind, seq);
