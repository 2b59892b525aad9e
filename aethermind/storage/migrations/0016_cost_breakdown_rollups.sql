-- Cost split the way a bill is (storage/rollups.py BREAKDOWN_COLUMNS): uncached input,
-- cache reads, cache writes, output, summed in the usage and dimension rollups as each
-- priced span stores them, so the aggregates break cost_usd down (cost_breakdown_usd).
-- Repricing moves them with the cost.
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['usage_rollup_hourly', 'usage_rollup_daily',
                               'dimension_rollup_hourly', 'dimension_rollup_daily'] LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN cost_input numeric NOT NULL DEFAULT 0,'
                       ' ADD COLUMN cost_cache_read numeric NOT NULL DEFAULT 0,'
                       ' ADD COLUMN cost_cache_write numeric NOT NULL DEFAULT 0,'
                       ' ADD COLUMN cost_output numeric NOT NULL DEFAULT 0', tbl);
    END LOOP;
END
$$;

-- Existing counted spans, folded in as the writer would have.
WITH s AS (
    SELECT organization_id, date_trunc('hour', "timestamp", 'UTC') AS hour,
           coalesce(provider, '') AS provider, coalesce(model, '') AS model,
           coalesce(service, '') AS service, coalesce(operation, '') AS operation,
           coalesce(environment, '') AS environment, coalesce(service_tier, '') AS service_tier,
           coalesce(sum(cost_input), 0) AS cost_input,
           coalesce(sum(cost_cache_read), 0) AS cost_cache_read,
           coalesce(sum(cost_cache_write), 0) AS cost_cache_write,
           coalesce(sum(cost_output), 0) AS cost_output
      FROM telemetry_events WHERE counted AND cost IS NOT NULL
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
), hourly AS (
    UPDATE usage_rollup_hourly r SET cost_input = s.cost_input,
           cost_cache_read = s.cost_cache_read, cost_cache_write = s.cost_cache_write,
           cost_output = s.cost_output
      FROM s
     WHERE r.organization_id = s.organization_id AND r.hour = s.hour
       AND r.provider = s.provider AND r.model = s.model AND r.service = s.service
       AND r.operation = s.operation AND r.environment = s.environment
       AND r.service_tier = s.service_tier
), d AS (
    SELECT organization_id, date_trunc('day', hour, 'UTC') AS day, provider, model, service,
           operation, environment, service_tier, sum(cost_input) AS cost_input,
           sum(cost_cache_read) AS cost_cache_read, sum(cost_cache_write) AS cost_cache_write,
           sum(cost_output) AS cost_output
      FROM s GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
)
UPDATE usage_rollup_daily r SET cost_input = d.cost_input,
       cost_cache_read = d.cost_cache_read, cost_cache_write = d.cost_cache_write,
       cost_output = d.cost_output
  FROM d
 WHERE r.organization_id = d.organization_id AND r.day = d.day
   AND r.provider = d.provider AND r.model = d.model AND r.service = d.service
   AND r.operation = d.operation AND r.environment = d.environment
   AND r.service_tier = d.service_tier;

-- The dimension rollups: each span once per attribution dimension and tag (as
-- storage/dimension_rollups.py expands it at this version), or once as '*' with none.
WITH s AS (
    SELECT organization_id, date_trunc('hour', "timestamp", 'UTC') AS hour, user_id,
           session_id, agent_name, tags, cost_input, cost_cache_read, cost_cache_write,
           cost_output
      FROM telemetry_events WHERE counted AND cost IS NOT NULL
), expanded AS (
    SELECT s.organization_id, s.hour, x.dimension, coalesce(x.value, '') AS value,
           s.cost_input, s.cost_cache_read, s.cost_cache_write, s.cost_output
      FROM s CROSS JOIN LATERAL (
          SELECT * FROM (VALUES ('user', s.user_id), ('session', s.session_id),
                                ('agent', s.agent_name)) AS a(dimension, value)
           WHERE NOT (coalesce(s.user_id, s.session_id, s.agent_name) IS NULL AND s.tags IS NULL)
          UNION ALL
          SELECT 'tag.' || t.key, t.value FROM jsonb_each_text(s.tags) AS t
          UNION ALL
          SELECT '*', NULL
           WHERE coalesce(s.user_id, s.session_id, s.agent_name) IS NULL AND s.tags IS NULL
      ) AS x(dimension, value)
), g AS (
    SELECT organization_id, hour, dimension, value,
           coalesce(sum(cost_input), 0) AS cost_input,
           coalesce(sum(cost_cache_read), 0) AS cost_cache_read,
           coalesce(sum(cost_cache_write), 0) AS cost_cache_write,
           coalesce(sum(cost_output), 0) AS cost_output
      FROM expanded GROUP BY 1, 2, 3, 4
), hourly AS (
    UPDATE dimension_rollup_hourly r SET cost_input = g.cost_input,
           cost_cache_read = g.cost_cache_read, cost_cache_write = g.cost_cache_write,
           cost_output = g.cost_output
      FROM g
     WHERE r.organization_id = g.organization_id AND r.hour = g.hour
       AND r.dimension = g.dimension AND r.value = g.value
), daily AS (
    SELECT organization_id, date_trunc('day', hour, 'UTC') AS day, dimension, value,
           sum(cost_input) AS cost_input, sum(cost_cache_read) AS cost_cache_read,
           sum(cost_cache_write) AS cost_cache_write, sum(cost_output) AS cost_output
      FROM g GROUP BY 1, 2, 3, 4
)
UPDATE dimension_rollup_daily r SET cost_input = daily.cost_input,
       cost_cache_read = daily.cost_cache_read, cost_cache_write = daily.cost_cache_write,
       cost_output = daily.cost_output
  FROM daily
 WHERE r.organization_id = daily.organization_id AND r.day = daily.day
   AND r.dimension = daily.dimension AND r.value = daily.value;
