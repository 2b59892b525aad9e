-- The service tier that served a request (semconv/tiers.py): batch, flex, priority, ...;
-- NULL for standard. A dimension like provider or model: a key of the usage rollups, where
-- standard requests count under ''. Existing rows are standard requests.
ALTER TABLE telemetry_events ADD COLUMN service_tier text;

ALTER TABLE usage_rollup_hourly ADD COLUMN service_tier text NOT NULL DEFAULT '';
ALTER TABLE usage_rollup_hourly DROP CONSTRAINT usage_rollup_hourly_pkey;
ALTER TABLE usage_rollup_hourly ADD PRIMARY KEY
    (organization_id, hour, provider, model, service, operation, environment, service_tier);

ALTER TABLE usage_rollup_daily ADD COLUMN service_tier text NOT NULL DEFAULT '';
ALTER TABLE usage_rollup_daily DROP CONSTRAINT usage_rollup_daily_pkey;
ALTER TABLE usage_rollup_daily ADD PRIMARY KEY
    (organization_id, day, provider, model, service, operation, environment, service_tier);

-- An organization's price for one tier (NULL: standard, and the base tier rules scale).
ALTER TABLE model_prices ADD COLUMN service_tier text
    CHECK (service_tier IS NULL OR length(service_tier) BETWEEN 1 AND 32);
