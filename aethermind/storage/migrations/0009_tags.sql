-- The organization's own tags (storage/tags.py): up to 8 tag keys it names, and each span's
-- value for each of them (read from the span's attributes, else its resource's).
ALTER TABLE organizations ADD COLUMN tag_keys text[] NOT NULL DEFAULT '{}';
-- An admin key sets its own organization's keys (row-level security keeps it to its own).
GRANT UPDATE (tag_keys) ON organizations TO aethermind_app;
ALTER TABLE telemetry_events ADD COLUMN tags jsonb;
