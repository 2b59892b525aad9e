-- Aethermind schema: organizations and plans, API keys, telemetry events partitioned by
-- month, the hourly rollup, per-organization price overrides, row-level security.
-- Applied by aethermind.storage.migrations.migrate() as the login role (the owner).

-- The role the server's pool connections SET ROLE to. NOLOGIN: nobody connects as it;
-- NOBYPASSRLS: row-level security always applies to it. Roles are cluster-wide, so several
-- databases of one cluster (tests, or two migrating at once) may race to create it.
DO $$
BEGIN
    CREATE ROLE aethermind_app NOLOGIN NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'aethermind_app', 'MEMBER') THEN
        EXECUTE format('GRANT aethermind_app TO %I', current_user);
    END IF;
EXCEPTION WHEN unique_violation THEN
    NULL;
END
$$;

-- The organization a transaction may see: set per transaction with
-- set_config('aethermind.org_id', '<uuid>', true). Unset (or empty) means none.
CREATE FUNCTION aethermind_current_org() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('aethermind.org_id', true), '')::uuid $$;

-- Plans and their defaults, in one place. An organization copies them at creation and
-- may be given its own values afterwards.
CREATE TABLE plans (
    name               text PRIMARY KEY,
    rate_limit_per_min integer NOT NULL CHECK (rate_limit_per_min > 0),
    retention_days     integer NOT NULL CHECK (retention_days > 0)
);
INSERT INTO plans (name, rate_limit_per_min, retention_days) VALUES
    ('FREE', 6000, 30),
    ('PRO', 60000, 90),
    ('ENTERPRISE', 600000, 365);

CREATE TABLE organizations (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug               text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    plan               text NOT NULL REFERENCES plans (name),
    rate_limit_per_min integer NOT NULL CHECK (rate_limit_per_min > 0),
    retention_days     integer NOT NULL CHECK (retention_days > 0),
    -- Opt-in to storing prompt/completion content in span attributes; the receiver strips
    -- content attributes before storage unless this is true.
    capture_content    boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Keys: only a bcrypt hash of the whole key is stored. The public id embedded in the key
-- finds the row without scanning. Unique keys lead with organization_id (Citus-ready);
-- public ids are 60+ random bits, so lookups by public id alone use a plain index.
CREATE TABLE api_keys (
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    public_id       text NOT NULL CHECK (public_id ~ '^[a-z0-9]{8,32}$'),
    key_hash        text NOT NULL,
    scopes          text[] NOT NULL
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['ingest', 'read', 'admin']::text[]),
    name            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    PRIMARY KEY (organization_id, id),
    UNIQUE (organization_id, public_id)
);
CREATE INDEX api_keys_public_id_idx ON api_keys (public_id);
CREATE INDEX api_keys_id_idx ON api_keys (id);

-- One row per stored span. Partitioned by month of the span's start time; the writer
-- creates partitions ahead of the data (aethermind_ensure_month_partitions) and the
-- default partition catches anything else, so an insert never fails for want of one.
-- No foreign key to organizations: its per-row check and key-share lock would cost
-- more than the writer's whole budget; organizations are never deleted under live data.
CREATE SEQUENCE telemetry_events_id_seq AS bigint CACHE 64;

CREATE TABLE telemetry_events (
    id                  bigint NOT NULL DEFAULT nextval('telemetry_events_id_seq'),
    organization_id     uuid NOT NULL,
    trace_id            text NOT NULL,
    span_id             text NOT NULL,
    parent_span_id      text,
    name                text NOT NULL,
    kind                text,
    "timestamp"         timestamptz NOT NULL,
    duration_ms         double precision,
    status              text NOT NULL DEFAULT 'UNSET',
    error_type          text,
    service             text,
    environment         text,
    provider            text,
    operation           text,
    request_model       text,
    response_model      text,
    -- The model that answered when the span says so, else the one asked for.
    model               text GENERATED ALWAYS AS (coalesce(response_model, request_model)) STORED,
    input_tokens        bigint,
    output_tokens       bigint,
    cache_read_tokens   bigint,
    cache_write_tokens  bigint,
    reasoning_tokens    bigint,
    total_tokens        bigint,
    -- USD; NULL when the span could not be priced (never 0 for an unknown model).
    cost                numeric,
    cost_input          numeric,
    cost_cache_read     numeric,
    cost_cache_write    numeric,
    cost_output         numeric,
    -- 'computed' | 'provided' | 'unknown'; NULL for spans that are not model calls.
    cost_source         text,
    price_model_id      text,
    provided_cost       numeric,
    attributes          jsonb NOT NULL DEFAULT '{}'::jsonb,
    resource_attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Idempotence: a re-sent span has the same ids and the same start time, so it
    -- conflicts here. Leads with organization_id, then time: inserts append to the right
    -- edge of the index and it serves "this organization, this time range".
    PRIMARY KEY (organization_id, "timestamp", trace_id, span_id)
) PARTITION BY RANGE ("timestamp");

CREATE TABLE telemetry_events_default PARTITION OF telemetry_events DEFAULT;

CREATE INDEX telemetry_events_trace_idx ON telemetry_events (organization_id, trace_id);
-- Operator queries filter on time alone (the deployment guide's monitoring queries);
-- spans arrive roughly in time order, so a BRIN index is tiny and cheap to maintain.
CREATE INDEX telemetry_events_timestamp_brin ON telemetry_events USING brin ("timestamp");

-- Latency histogram bucket bounds (ms) shared by the writer and the queries; mirrored by
-- aethermind.storage.histogram.LATENCY_BOUNDS_MS (a test checks they agree).
CREATE FUNCTION aethermind_latency_bounds() RETURNS double precision[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
                      60000, 120000, 300000]::double precision[] $$;

-- Hourly rollup, maintained by the writer in the same transaction as the insert and only
-- from rows really inserted. Dimensions are '' (not NULL) when unknown, so the primary key
-- can be the upsert target on every PostgreSQL version. latency_bNN counts spans whose
-- duration falls in histogram bucket NN (width_bucket over aethermind_latency_bounds()).
CREATE TABLE usage_rollup_hourly (
    organization_id    uuid NOT NULL,
    hour               timestamptz NOT NULL,
    provider           text NOT NULL DEFAULT '',
    model              text NOT NULL DEFAULT '',
    service            text NOT NULL DEFAULT '',
    operation          text NOT NULL DEFAULT '',
    environment        text NOT NULL DEFAULT '',
    calls              bigint NOT NULL DEFAULT 0,
    errors             bigint NOT NULL DEFAULT 0,
    input_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens      bigint NOT NULL DEFAULT 0,
    cache_read_tokens  bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    reasoning_tokens   bigint NOT NULL DEFAULT 0,
    total_tokens       bigint NOT NULL DEFAULT 0,
    -- Sum of the priced spans' cost; meaningful only when priced_calls > 0.
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
    PRIMARY KEY (organization_id, hour, provider, model, service, operation, environment)
);

-- Per-organization price overrides, USD per million tokens. model_pattern is matched by
-- the pricing code (semconv), not by SQL.
CREATE TABLE model_prices (
    id                  uuid NOT NULL DEFAULT gen_random_uuid(),
    organization_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    provider            text,
    model_pattern       text NOT NULL CHECK (length(model_pattern) > 0),
    input_per_mtok       numeric CHECK (input_per_mtok >= 0),
    output_per_mtok      numeric CHECK (output_per_mtok >= 0),
    cache_read_per_mtok  numeric CHECK (cache_read_per_mtok >= 0),
    cache_write_per_mtok numeric CHECK (cache_write_per_mtok >= 0),
    valid_from          timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX model_prices_lookup_idx ON model_prices (organization_id, model_pattern, valid_from);

-- Creates the monthly partitions holding the given instants (UTC months), moving any rows
-- the default partition holds for those months. SECURITY DEFINER because only the owner
-- may create partitions, and the writer runs as aethermind_app. Serialized by a lock on
-- the parent so concurrent writers never race on the same CREATE.
CREATE FUNCTION aethermind_ensure_month_partitions(instants timestamptz[]) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
DECLARE
    month_start timestamptz;
    month_end   timestamptz;
    part_name   text;
    cols        text;
    created     integer := 0;
BEGIN
    FOR month_start IN
        SELECT DISTINCT date_trunc('month', i, 'UTC') FROM unnest(instants) AS i WHERE i IS NOT NULL
    LOOP
        part_name := 'telemetry_events_p' || to_char(month_start AT TIME ZONE 'UTC', 'YYYYMM');
        CONTINUE WHEN to_regclass(quote_ident(part_name)) IS NOT NULL;
        -- A relation lock (unlike an advisory lock) also refreshes our view of the
        -- catalog, so the re-check below sees a partition another writer just made.
        -- SHARE UPDATE EXCLUSIVE serializes partition makers without blocking inserts.
        LOCK TABLE telemetry_events IN SHARE UPDATE EXCLUSIVE MODE;
        CONTINUE WHEN to_regclass(quote_ident(part_name)) IS NOT NULL;
        month_end := (month_start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
        IF EXISTS (SELECT 1 FROM telemetry_events_default
                   WHERE "timestamp" >= month_start AND "timestamp" < month_end) THEN
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
              FROM pg_attribute
             WHERE attrelid = 'telemetry_events'::regclass AND attnum > 0
               AND NOT attisdropped AND attgenerated = '';
            CREATE TEMP TABLE aethermind_moving (LIKE telemetry_events) ON COMMIT DROP;
            WITH moved AS (
                DELETE FROM telemetry_events_default
                 WHERE "timestamp" >= month_start AND "timestamp" < month_end
                RETURNING *
            )
            INSERT INTO aethermind_moving SELECT * FROM moved;
            EXECUTE format('CREATE TABLE %I PARTITION OF telemetry_events FOR VALUES FROM (%L) TO (%L)',
                           part_name, month_start, month_end);
            EXECUTE format('INSERT INTO telemetry_events (%s) SELECT %s FROM aethermind_moving', cols, cols);
            DROP TABLE aethermind_moving;
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF telemetry_events FOR VALUES FROM (%L) TO (%L)',
                           part_name, month_start, month_end);
        END IF;
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Key lookup happens before the organization is known (the key is what tells it), so it
-- cannot run under the tenant policy. This SECURITY DEFINER function returns the one
-- matching row with what the receiver needs to authorise; it reveals nothing without the
-- public id (60+ random bits) and the caller must still match the bcrypt hash.
CREATE FUNCTION aethermind_find_key(p_public_id text)
    RETURNS TABLE (
        key_id uuid, organization_id uuid, key_hash text, scopes text[], revoked_at timestamptz,
        last_used_at timestamptz, organization_slug text, plan text, rate_limit_per_min integer,
        retention_days integer, capture_content boolean
    )
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
        SELECT k.id, k.organization_id, k.key_hash, k.scopes, k.revoked_at, k.last_used_at,
               o.slug, o.plan, o.rate_limit_per_min, o.retention_days, o.capture_content
          FROM api_keys k JOIN organizations o ON o.id = k.organization_id
         WHERE k.public_id = p_public_id
    $$;

-- Row-level security: each tenant table shows a transaction only the rows of the
-- organization in aethermind.org_id; with no setting it shows nothing.
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
    USING (id = aethermind_current_org());

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (organization_id = aethermind_current_org())
    WITH CHECK (organization_id = aethermind_current_org());

ALTER TABLE telemetry_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON telemetry_events
    USING (organization_id = aethermind_current_org())
    WITH CHECK (organization_id = aethermind_current_org());

ALTER TABLE usage_rollup_hourly ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_rollup_hourly
    USING (organization_id = aethermind_current_org())
    WITH CHECK (organization_id = aethermind_current_org());

ALTER TABLE model_prices ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON model_prices
    USING (organization_id = aethermind_current_org())
    WITH CHECK (organization_id = aethermind_current_org());

-- What the application role may do; everything else (DDL, other organizations) is the
-- owner's. Partitions get no grants: the app reaches them only through the parent.
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO aethermind_app', current_schema());
END
$$;
GRANT SELECT ON plans TO aethermind_app;
GRANT SELECT ON organizations TO aethermind_app;
GRANT SELECT, INSERT, UPDATE ON api_keys TO aethermind_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON telemetry_events TO aethermind_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON usage_rollup_hourly TO aethermind_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON model_prices TO aethermind_app;
GRANT USAGE ON SEQUENCE telemetry_events_id_seq TO aethermind_app;
REVOKE ALL ON FUNCTION aethermind_ensure_month_partitions(timestamptz[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aethermind_ensure_month_partitions(timestamptz[]) TO aethermind_app;
REVOKE ALL ON FUNCTION aethermind_find_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aethermind_find_key(text) TO aethermind_app;
