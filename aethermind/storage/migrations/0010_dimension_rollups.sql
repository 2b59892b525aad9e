-- Who and what spent it, pre-aggregated (storage/dimension_rollups.py). Users and sessions
-- run into the millions, so they cannot be keys of the usage rollups (every combination
-- with model, service... would be a row); instead each counted span adds, per dimension
-- (user, session, agent, each tag key the organization names), one row for its value ('' for
-- none) to:
--   dimension_rollup_hourly:  exact sums per hour, and
--   dimension_rollup_daily:   per UTC day, read by value (one user's, one session's usage;
--                             the exact totals of top-N candidates: days, then hours, then
--                             spans for the range's ragged ends, as the usage rollups);
--   dimension_rollup_monthly: sums per calendar month (UTC), read by rank (the top-N
--                             candidates of a month, by each measure top-N can order by)
--                             and by value (a user's or a tag's month-to-date, for budgets).
-- A span that names no user, session or agent and has no tag keys in force adds one row
-- instead of three, under dimension '*' and value '': the null group of user, session and
-- agent is its own '' row plus that one (what most spans are before a team adopts these).
-- The writer keeps all three in the same transaction as the spans, like the usage rollups.
CREATE TABLE dimension_rollup_hourly (
    organization_id    uuid NOT NULL,
    dimension          text NOT NULL,
    value              text NOT NULL,
    hour               timestamptz NOT NULL,
    calls              bigint NOT NULL DEFAULT 0,
    errors             bigint NOT NULL DEFAULT 0,
    input_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens      bigint NOT NULL DEFAULT 0,
    cache_read_tokens  bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    reasoning_tokens   bigint NOT NULL DEFAULT 0,
    total_tokens       bigint NOT NULL DEFAULT 0,
    cost               numeric NOT NULL DEFAULT 0,
    priced_calls       bigint NOT NULL DEFAULT 0,
    unpriced_calls     bigint NOT NULL DEFAULT 0,
    latency_count      bigint NOT NULL DEFAULT 0,
    latency_sum_ms     double precision NOT NULL DEFAULT 0,
    latency_min_ms     double precision,
    latency_max_ms     double precision,
    latency_b00 bigint NOT NULL DEFAULT 0, latency_b01 bigint NOT NULL DEFAULT 0,
    latency_b02 bigint NOT NULL DEFAULT 0, latency_b03 bigint NOT NULL DEFAULT 0,
    latency_b04 bigint NOT NULL DEFAULT 0, latency_b05 bigint NOT NULL DEFAULT 0,
    latency_b06 bigint NOT NULL DEFAULT 0, latency_b07 bigint NOT NULL DEFAULT 0,
    latency_b08 bigint NOT NULL DEFAULT 0, latency_b09 bigint NOT NULL DEFAULT 0,
    latency_b10 bigint NOT NULL DEFAULT 0, latency_b11 bigint NOT NULL DEFAULT 0,
    latency_b12 bigint NOT NULL DEFAULT 0, latency_b13 bigint NOT NULL DEFAULT 0,
    latency_b14 bigint NOT NULL DEFAULT 0, latency_b15 bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, dimension, value, hour)
);

CREATE TABLE dimension_rollup_daily (LIKE dimension_rollup_hourly INCLUDING DEFAULTS);
ALTER TABLE dimension_rollup_daily RENAME COLUMN hour TO day;
ALTER TABLE dimension_rollup_daily ADD PRIMARY KEY (organization_id, dimension, value, day);

CREATE TABLE dimension_rollup_monthly (
    organization_id    uuid NOT NULL,
    dimension          text NOT NULL,
    value              text NOT NULL,
    month              timestamptz NOT NULL,
    calls              bigint NOT NULL DEFAULT 0,
    errors             bigint NOT NULL DEFAULT 0,
    input_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens      bigint NOT NULL DEFAULT 0,
    cache_read_tokens  bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    reasoning_tokens   bigint NOT NULL DEFAULT 0,
    total_tokens       bigint NOT NULL DEFAULT 0,
    cost               numeric NOT NULL DEFAULT 0,
    priced_calls       bigint NOT NULL DEFAULT 0,
    unpriced_calls     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, dimension, value, month)
);
-- A month's values by rank, one index per measure top-N orders by (dimensions.ORDER_BY).
CREATE INDEX dimension_rollup_monthly_by_cost
    ON dimension_rollup_monthly (organization_id, dimension, month, cost DESC);
CREATE INDEX dimension_rollup_monthly_by_calls
    ON dimension_rollup_monthly (organization_id, dimension, month, calls DESC);
CREATE INDEX dimension_rollup_monthly_by_total_tokens
    ON dimension_rollup_monthly (organization_id, dimension, month, total_tokens DESC);

DO $$
DECLARE
    tbl text;
    pass constant text := '(current_setting(''aethermind.maintenance'', true) = ''on'''
                          ' OR current_setting(''role'') = ''aethermind_app'')';
BEGIN
    FOREACH tbl IN ARRAY ARRAY['dimension_rollup_hourly', 'dimension_rollup_daily',
                               'dimension_rollup_monthly'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I'
                       ' USING (organization_id = aethermind_current_org())'
                       ' WITH CHECK (organization_id = aethermind_current_org())', tbl);
        -- The owner's cross-tenant pass, as 0004 gives every tenant table (retention).
        EXECUTE format('CREATE POLICY owner_maintenance ON %I TO %I USING %s WITH CHECK %s',
                       tbl, current_user, pass, pass);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO aethermind_app', tbl);
    END LOOP;
END
$$;

-- Spans stored before this migration: the dimension rows of the counted ones (hourly, with
-- the latency histogram as the writer fills it; then the days and months from the hours).
-- Their tags did not record which keys were in force, so a tag's '' row counts only the
-- spans stored from here on.
INSERT INTO dimension_rollup_hourly
SELECT e.organization_id, d.dimension, coalesce(d.value, ''),
       date_trunc('hour', e."timestamp", 'UTC'), count(*),
       count(*) FILTER (WHERE e.status = 'ERROR' OR e.error_type IS NOT NULL),
       coalesce(sum(e.input_tokens), 0), coalesce(sum(e.output_tokens), 0),
       coalesce(sum(e.cache_read_tokens), 0), coalesce(sum(e.cache_write_tokens), 0),
       coalesce(sum(e.reasoning_tokens), 0), coalesce(sum(e.total_tokens), 0),
       coalesce(sum(e.cost), 0), count(e.cost),
       count(*) FILTER (WHERE e.cost IS NULL AND e.cost_source = 'unknown'),
       count(e.duration_ms), coalesce(sum(e.duration_ms), 0), min(e.duration_ms),
       max(e.duration_ms),
       count(*) FILTER (WHERE b.i = 0), count(*) FILTER (WHERE b.i = 1),
       count(*) FILTER (WHERE b.i = 2), count(*) FILTER (WHERE b.i = 3),
       count(*) FILTER (WHERE b.i = 4), count(*) FILTER (WHERE b.i = 5),
       count(*) FILTER (WHERE b.i = 6), count(*) FILTER (WHERE b.i = 7),
       count(*) FILTER (WHERE b.i = 8), count(*) FILTER (WHERE b.i = 9),
       count(*) FILTER (WHERE b.i = 10), count(*) FILTER (WHERE b.i = 11),
       count(*) FILTER (WHERE b.i = 12), count(*) FILTER (WHERE b.i = 13),
       count(*) FILTER (WHERE b.i = 14), count(*) FILTER (WHERE b.i = 15)
  FROM telemetry_events e
 CROSS JOIN LATERAL (
       SELECT * FROM (VALUES ('user', e.user_id), ('session', e.session_id),
                             ('agent', e.agent_name)) AS a(dimension, value)
        WHERE NOT (coalesce(e.user_id, e.session_id, e.agent_name) IS NULL AND e.tags IS NULL)
       UNION ALL
       SELECT 'tag.' || t.key, t.value FROM jsonb_each_text(e.tags) AS t
       UNION ALL
       SELECT '*', NULL
        WHERE coalesce(e.user_id, e.session_id, e.agent_name) IS NULL AND e.tags IS NULL
 ) AS d(dimension, value)
 CROSS JOIN LATERAL (SELECT width_bucket(e.duration_ms, aethermind_latency_bounds())) AS b(i)
 WHERE e.counted
 GROUP BY 1, 2, 3, 4;

INSERT INTO dimension_rollup_daily
SELECT organization_id, dimension, value, date_trunc('day', hour, 'UTC'), sum(calls),
       sum(errors), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
       sum(cache_write_tokens), sum(reasoning_tokens), sum(total_tokens), sum(cost),
       sum(priced_calls), sum(unpriced_calls), sum(latency_count), sum(latency_sum_ms),
       min(latency_min_ms), max(latency_max_ms),
       sum(latency_b00), sum(latency_b01), sum(latency_b02), sum(latency_b03), sum(latency_b04),
       sum(latency_b05), sum(latency_b06), sum(latency_b07), sum(latency_b08), sum(latency_b09),
       sum(latency_b10), sum(latency_b11), sum(latency_b12), sum(latency_b13), sum(latency_b14),
       sum(latency_b15)
  FROM dimension_rollup_hourly
 GROUP BY 1, 2, 3, 4;

INSERT INTO dimension_rollup_monthly
SELECT organization_id, dimension, value, date_trunc('month', hour, 'UTC'), sum(calls),
       sum(errors), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
       sum(cache_write_tokens), sum(reasoning_tokens), sum(total_tokens), sum(cost),
       sum(priced_calls), sum(unpriced_calls)
  FROM dimension_rollup_hourly
 GROUP BY 1, 2, 3, 4;
