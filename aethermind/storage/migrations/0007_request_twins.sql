-- One provider request recorded by two instrumentations whose spans land in different traces
-- (storage/counting.py, twins): the Anthropic SDK's own span beside an instrumentation's,
-- each the root of a trace of its own. They carry the provider's response id; the writer
-- finds a span's twins by it and counts the request once.
--
-- response_id: the provider's response id of a root request span (NULL otherwise).
-- counted_elsewhere: the span's own trace would count it, but its twin in another trace
-- counts instead (then "counted" is false). Kept so a later change in either trace can hand
-- the count back.
ALTER TABLE telemetry_events
    ADD COLUMN response_id text,
    ADD COLUMN counted_elsewhere boolean NOT NULL DEFAULT false;

CREATE INDEX telemetry_events_response_idx ON telemetry_events (organization_id, response_id)
    WHERE response_id IS NOT NULL;
