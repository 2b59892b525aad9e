-- Daily rollup: the hourly rollup summed per UTC day, maintained by the writer in the same
-- transaction from the same inserted rows. A 30-day query then reads ~30 rows per group
-- instead of ~720, which is what keeps dashboards fast at tens of millions of spans.
-- Same columns as usage_rollup_hourly, with "day" (UTC midnight) instead of "hour".
CREATE TABLE usage_rollup_daily (LIKE usage_rollup_hourly INCLUDING DEFAULTS);
ALTER TABLE usage_rollup_daily RENAME COLUMN hour TO day;
ALTER TABLE usage_rollup_daily
    ADD PRIMARY KEY (organization_id, day, provider, model, service, operation, environment);

-- Existing data (none in a fresh install): fold the hourly rollup into days.
INSERT INTO usage_rollup_daily
SELECT organization_id, date_trunc('day', hour, 'UTC'), provider, model, service, operation,
       environment, sum(calls), sum(errors), sum(input_tokens), sum(output_tokens),
       sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), sum(total_tokens),
       sum(cost), sum(priced_calls), sum(unpriced_calls), sum(latency_count), sum(latency_sum_ms),
       min(latency_min_ms), max(latency_max_ms),
       sum(latency_b00), sum(latency_b01), sum(latency_b02), sum(latency_b03), sum(latency_b04),
       sum(latency_b05), sum(latency_b06), sum(latency_b07), sum(latency_b08), sum(latency_b09),
       sum(latency_b10), sum(latency_b11), sum(latency_b12), sum(latency_b13), sum(latency_b14),
       sum(latency_b15)
  FROM usage_rollup_hourly
 GROUP BY 1, 2, 3, 4, 5, 6, 7;

ALTER TABLE usage_rollup_daily ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_rollup_daily
    USING (organization_id = aethermind_current_org())
    WITH CHECK (organization_id = aethermind_current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON usage_rollup_daily TO aethermind_app;
