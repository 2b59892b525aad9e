-- Each provider request counted once (storage/counting.py): a span's usage role, and whether
-- it counts toward totals. The rollups are sums over counted spans only; the writer keeps
-- them so in the same transaction as every insert or change of "counted".
--
-- usage_role: 'request' (a provider request), 'rollup' (not a request, but reports usage:
-- an agent run, a workflow, an SDK's outer span), NULL (no usage: a tool span).
-- counted: rows written before this migration keep counting as they did (the rollups hold
-- them); the writer sets it explicitly on every new row.
ALTER TABLE telemetry_events
    ADD COLUMN usage_role text CHECK (usage_role IN ('request', 'rollup')),
    ADD COLUMN counted boolean NOT NULL DEFAULT true;
ALTER TABLE telemetry_events ALTER COLUMN counted SET DEFAULT false;

UPDATE telemetry_events
   SET usage_role = CASE
           WHEN cost_source IS NOT NULL THEN 'request'
           WHEN coalesce(input_tokens, output_tokens, total_tokens, cache_read_tokens,
                         cache_write_tokens, reasoning_tokens) IS NOT NULL
             OR provided_cost IS NOT NULL THEN 'rollup'
       END
 WHERE cost_source IS NOT NULL
    OR coalesce(input_tokens, output_tokens, total_tokens, cache_read_tokens,
                cache_write_tokens, reasoning_tokens) IS NOT NULL
    OR provided_cost IS NOT NULL;
