-- Which cost counts is each organization's choice (organizations.cost_basis): ours, computed
-- from the tokens, or the cost a span reported where it reported one. The rollups sum our
-- cost of the spans that reported one (cost_of_provided), so either answer is a sum away:
-- computed - cost_of_provided + provided_cost.
ALTER TABLE organizations
    ADD COLUMN cost_basis text NOT NULL DEFAULT 'computed'
        CHECK (cost_basis IN ('computed', 'provided'));
GRANT UPDATE (cost_basis) ON organizations TO aethermind_app;

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['usage_rollup_hourly', 'usage_rollup_daily',
                               'dimension_rollup_hourly', 'dimension_rollup_daily'] LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN cost_of_provided numeric NOT NULL DEFAULT 0',
                       tbl);
    END LOOP;
END
$$;

-- Existing counted spans, folded in as the writer would have.
WITH s AS (
    SELECT organization_id, date_trunc('hour', "timestamp", 'UTC') AS hour,
           coalesce(provider, '') AS provider, coalesce(model, '') AS model,
           coalesce(service, '') AS service, coalesce(operation, '') AS operation,
           coalesce(environment, '') AS environment, coalesce(service_tier, '') AS service_tier,
           sum(cost) AS cost_of_provided
      FROM telemetry_events WHERE counted AND cost IS NOT NULL AND provided_cost IS NOT NULL
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
), hourly AS (
    UPDATE usage_rollup_hourly r SET cost_of_provided = s.cost_of_provided
      FROM s
     WHERE r.organization_id = s.organization_id AND r.hour = s.hour
       AND r.provider = s.provider AND r.model = s.model AND r.service = s.service
       AND r.operation = s.operation AND r.environment = s.environment
       AND r.service_tier = s.service_tier
), d AS (
    SELECT organization_id, date_trunc('day', hour, 'UTC') AS day, provider, model, service,
           operation, environment, service_tier, sum(cost_of_provided) AS cost_of_provided
      FROM s GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
)
UPDATE usage_rollup_daily r SET cost_of_provided = d.cost_of_provided
  FROM d
 WHERE r.organization_id = d.organization_id AND r.day = d.day
   AND r.provider = d.provider AND r.model = d.model AND r.service = d.service
   AND r.operation = d.operation AND r.environment = d.environment
   AND r.service_tier = d.service_tier;

WITH s AS (
    SELECT organization_id, date_trunc('hour', "timestamp", 'UTC') AS hour, user_id,
           session_id, agent_name, tags, cost AS cost_of_provided
      FROM telemetry_events WHERE counted AND cost IS NOT NULL AND provided_cost IS NOT NULL
), expanded AS (
    SELECT s.organization_id, s.hour, x.dimension, coalesce(x.value, '') AS value, s.cost_of_provided
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
    SELECT organization_id, hour, dimension, value, sum(cost_of_provided) AS cost_of_provided
      FROM expanded GROUP BY 1, 2, 3, 4
), hourly AS (
    UPDATE dimension_rollup_hourly r SET cost_of_provided = g.cost_of_provided
      FROM g
     WHERE r.organization_id = g.organization_id AND r.hour = g.hour
       AND r.dimension = g.dimension AND r.value = g.value
), daily AS (
    SELECT organization_id, date_trunc('day', hour, 'UTC') AS day, dimension, value,
           sum(cost_of_provided) AS cost_of_provided
      FROM g GROUP BY 1, 2, 3, 4
)
UPDATE dimension_rollup_daily r SET cost_of_provided = daily.cost_of_provided
  FROM daily
 WHERE r.organization_id = daily.organization_id AND r.day = daily.day
   AND r.dimension = daily.dimension AND r.value = daily.value;
