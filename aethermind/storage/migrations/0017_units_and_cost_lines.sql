-- Usage billed at rates of its own and the cost lines it adds (storage/rollups.py
-- BREAKDOWN_COLUMNS): audio, image and video tokens (cost_modality), per-call fees
-- (cost_fees), costs that are not tokens reported by spans that are not model calls
-- (cost_other), and what cache reads saved (cost_saved_by_cache, not part of cost).
ALTER TABLE telemetry_events
    ADD COLUMN cost_modality numeric,
    ADD COLUMN cost_fees numeric,
    ADD COLUMN cost_other numeric,
    ADD COLUMN cost_saved_by_cache numeric,
    ADD COLUMN units jsonb;

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['usage_rollup_hourly', 'usage_rollup_daily',
                               'dimension_rollup_hourly', 'dimension_rollup_daily'] LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN cost_modality numeric NOT NULL DEFAULT 0,'
                       ' ADD COLUMN cost_fees numeric NOT NULL DEFAULT 0,'
                       ' ADD COLUMN cost_other numeric NOT NULL DEFAULT 0,'
                       ' ADD COLUMN cost_saved_by_cache numeric NOT NULL DEFAULT 0', tbl);
    END LOOP;
END
$$;

-- A span that is not a model call and reported a cost already had it as its cost: it is
-- the 'other' line. Older spans' savings and fees are not known without their rates
-- (aethermind reprice fills them in).
UPDATE telemetry_events SET cost_other = cost
 WHERE usage_role = 'rollup' AND cost_source = 'provided' AND cost IS NOT NULL;

WITH s AS (
    SELECT organization_id, date_trunc('hour', "timestamp", 'UTC') AS hour,
           coalesce(provider, '') AS provider, coalesce(model, '') AS model,
           coalesce(service, '') AS service, coalesce(operation, '') AS operation,
           coalesce(environment, '') AS environment, coalesce(service_tier, '') AS service_tier,
           sum(cost_other) AS cost_other
      FROM telemetry_events WHERE counted AND cost_other IS NOT NULL
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
), hourly AS (
    UPDATE usage_rollup_hourly r SET cost_other = s.cost_other
      FROM s
     WHERE r.organization_id = s.organization_id AND r.hour = s.hour
       AND r.provider = s.provider AND r.model = s.model AND r.service = s.service
       AND r.operation = s.operation AND r.environment = s.environment
       AND r.service_tier = s.service_tier
), d AS (
    SELECT organization_id, date_trunc('day', hour, 'UTC') AS day, provider, model, service,
           operation, environment, service_tier, sum(cost_other) AS cost_other
      FROM s GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
)
UPDATE usage_rollup_daily r SET cost_other = d.cost_other
  FROM d
 WHERE r.organization_id = d.organization_id AND r.day = d.day
   AND r.provider = d.provider AND r.model = d.model AND r.service = d.service
   AND r.operation = d.operation AND r.environment = d.environment
   AND r.service_tier = d.service_tier;

WITH s AS (
    SELECT organization_id, date_trunc('hour', "timestamp", 'UTC') AS hour, user_id,
           session_id, agent_name, tags, cost_other
      FROM telemetry_events WHERE counted AND cost_other IS NOT NULL
), expanded AS (
    SELECT s.organization_id, s.hour, x.dimension, coalesce(x.value, '') AS value, s.cost_other
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
    SELECT organization_id, hour, dimension, value, sum(cost_other) AS cost_other
      FROM expanded GROUP BY 1, 2, 3, 4
), hourly AS (
    UPDATE dimension_rollup_hourly r SET cost_other = g.cost_other
      FROM g
     WHERE r.organization_id = g.organization_id AND r.hour = g.hour
       AND r.dimension = g.dimension AND r.value = g.value
), daily AS (
    SELECT organization_id, date_trunc('day', hour, 'UTC') AS day, dimension, value,
           sum(cost_other) AS cost_other
      FROM g GROUP BY 1, 2, 3, 4
)
UPDATE dimension_rollup_daily r SET cost_other = daily.cost_other
  FROM daily
 WHERE r.organization_id = daily.organization_id AND r.day = daily.day
   AND r.dimension = daily.dimension AND r.value = daily.value;
