-- Usage reported as OTLP metrics (storage/metric_usage.py): one row per data point of a
-- metric that counts tokens, cost or calls, as sent. Metrics are aggregates, not calls, so
-- these rows never enter telemetry_events or its rollups: the aggregates read them only for
-- services that reported no span or event usage that UTC day (the "spans win" rule).
-- A cumulative series' increase is computed when read, from consecutive points of one
-- (series, start_time); a re-delivered point is the same key and is stored once.
CREATE TABLE metric_usage (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    series text NOT NULL,
    start_time timestamptz NOT NULL,
    "time" timestamptz NOT NULL,
    cumulative boolean NOT NULL,
    measure text NOT NULL,
    value double precision NOT NULL CHECK (value >= 0),
    unit_price numeric,
    service text NOT NULL DEFAULT '',
    provider text NOT NULL DEFAULT '',
    model text NOT NULL DEFAULT '',
    user_id text,
    session_id text,
    PRIMARY KEY (organization_id, series, start_time, "time")
);
CREATE INDEX metric_usage_by_time ON metric_usage (organization_id, "time");

DO $$
DECLARE
    pass constant text := '(current_setting(''aethermind.maintenance'', true) = ''on'''
                          ' OR current_setting(''role'') = ''aethermind_app'')';
BEGIN
    ALTER TABLE metric_usage ENABLE ROW LEVEL SECURITY;
    ALTER TABLE metric_usage FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON metric_usage
        USING (organization_id = aethermind_current_org())
        WITH CHECK (organization_id = aethermind_current_org());
    -- The owner's cross-tenant pass, as 0004 gives every tenant table (retention).
    EXECUTE format('CREATE POLICY owner_maintenance ON metric_usage TO %I USING %s WITH CHECK %s',
                   current_user, pass, pass);
    GRANT SELECT, INSERT, DELETE ON metric_usage TO aethermind_app;
END
$$;
