-- Who and what spent it: the user, session and agent a span names (its own attributes, else
-- its resource's; see semconv.attributes USER_KEYS, SESSION_KEYS, AGENT_KEYS). Queried as the
-- dimensions "user", "session" and "agent" (storage/dimensions.py). Rows stored before this
-- migration have none.
ALTER TABLE telemetry_events
    ADD COLUMN user_id text,
    ADD COLUMN session_id text,
    ADD COLUMN agent_name text;
