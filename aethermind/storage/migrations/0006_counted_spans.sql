-- Each provider request counted once (storage/counting.py): a span's usage role, and whether
-- it counts toward totals. The rollups are sums over counted spans only; the writer keeps
-- them so in the same transaction as every insert or change of "counted".
--
-- usage_role: 'request' (a provider request), 'rollup' (not a request, but reports usage:
-- an agent run, a workflow, an SDK's outer span), NULL (no usage: a tool span).
-- instrumentation_scope: the OTel instrumentation scope that wrote the span (two
-- instrumentations' spans of one request are told apart by it).
-- counted: rows written before this migration keep counting as they did (the rollups hold
-- them); the writer sets it explicitly on every new row.
ALTER TABLE telemetry_events
    ADD COLUMN usage_role text CHECK (usage_role IN ('request', 'rollup')),
    ADD COLUMN instrumentation_scope text,
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


-- Statistics for a young partition. Its indexes are made empty, and until something
-- analyzes the partition the planner believes they still are: every index then costs the
-- same, and the trace lookup the writer makes for each batch can go through the time-leading
-- primary key, reading every span of the range for each trace (seen under load: a second a
-- batch). The writer asks for this once per process after writing a few hundred spans into
-- a month; autovacuum keeps the statistics from then on. SECURITY DEFINER: only the owner
-- may analyze, and the writer runs as aethermind_app.
CREATE FUNCTION aethermind_analyze_month(month_start timestamptz) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
DECLARE
    part_name text := 'telemetry_events_p' || to_char(month_start AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
    IF to_regclass(quote_ident(part_name)) IS NULL THEN
        RETURN false;
    END IF;
    -- Never wait behind autovacuum (which is then analyzing it anyway).
    SET LOCAL lock_timeout = '200ms';
    EXECUTE format('ANALYZE %I', part_name);
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$$;
REVOKE ALL ON FUNCTION aethermind_analyze_month(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aethermind_analyze_month(timestamptz) TO aethermind_app;

-- The traces that have a span naming a parent, with the latest start time seen. A root span
-- (the common case: one span per trace) only needs the trace's stored spans when spans under
-- it arrived first; this small table says so, so the writer reads the big one only for these
-- traces and for spans that have parents. Retention deletes entries older than the window in
-- which spans of one trace are still decided together.
CREATE TABLE linked_traces (
    organization_id uuid NOT NULL,
    trace_id        text NOT NULL,
    last_start      timestamptz NOT NULL,
    PRIMARY KEY (organization_id, trace_id)
);
ALTER TABLE linked_traces ENABLE ROW LEVEL SECURITY;
ALTER TABLE linked_traces FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON linked_traces
    USING (organization_id = aethermind_current_org())
    WITH CHECK (organization_id = aethermind_current_org());
-- The owner's cross-tenant pass, as 0004 gives every tenant table (retention uses it).
DO $$
DECLARE
    pass constant text := '(current_setting(''aethermind.maintenance'', true) = ''on'''
                          ' OR current_setting(''role'') = ''aethermind_app'')';
BEGIN
    EXECUTE format('CREATE POLICY owner_maintenance ON linked_traces TO %I USING %s WITH CHECK %s',
                   current_user, pass, pass);
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON linked_traces TO aethermind_app;
