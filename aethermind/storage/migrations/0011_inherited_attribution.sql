-- What a span passes on to the spans under it (storage/inheritance.py): the user, session,
-- agent and tag values its own attributes name, else those it inherited from an ancestor
-- that arrived in the same request (an ancestor that is not a GenAI span is not stored);
-- never its resource's. {"user": ..., "session": ..., "agent": ..., "tag.team": ...}; NULL
-- when none. A span's user_id, session_id, agent_name and tags are its own values, else its
-- nearest ancestor's, else its resource's: the writer applies a late ancestor's values to
-- the spans stored under it (and moves the dimension rollups) in the same transaction.
ALTER TABLE telemetry_events ADD COLUMN inheritable jsonb;
