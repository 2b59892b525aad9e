-- Monthly budgets per organization, and the record of budget alerts sent (or being sent)
-- for each threshold of each UTC month. Same tenancy rules as the other tenant tables:
-- row-level security on aethermind_current_org(), keys leading with organization_id.

-- One budget per organization. thresholds are percentages of monthly_limit_usd, sorted and
-- distinct (the code normalizes them; the checks here keep out what could never fire).
-- webhook_url holds a secret (Slack puts its token in the path): never log it in full.
CREATE TABLE budgets (
    organization_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    monthly_limit_usd numeric NOT NULL CHECK (monthly_limit_usd > 0),
    thresholds        integer[] NOT NULL DEFAULT '{50,80,100}'
        CHECK (cardinality(thresholds) BETWEEN 1 AND 20
               AND array_position(thresholds, NULL) IS NULL
               AND 0 < ALL (thresholds) AND 1000 >= ALL (thresholds)),
    webhook_url       text NOT NULL CHECK (webhook_url ~ '^https?://[^/?#]+'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id)
);

-- One row per (organization, UTC month, threshold) ever claimed. Inserting the row (INSERT
-- ... ON CONFLICT DO NOTHING) is the claim: of several replicas checking at once exactly
-- one gets it, so a threshold is announced at most once a month. The claimer holds a lease
-- (lease_id until lease_expires_at); results are written only under the same lease_id, so
-- a replica that lost its lease cannot overwrite a newer claimer's outcome.
--   pending:   claimed, being delivered (or its claimer died: re-claimable after the lease)
--   delivered: the webhook answered 2xx; never sent again
--   failed:    attempts exhausted; re-claimable from next_attempt_at (NULL: not on its own,
--              only after the budget's webhook changes)
-- Rows are kept as history; a new month simply has no rows yet.
CREATE TABLE alert_deliveries (
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    month            date NOT NULL CHECK (extract(day FROM month) = 1),
    threshold        integer NOT NULL CHECK (threshold > 0),
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    rounds           integer NOT NULL DEFAULT 1 CHECK (rounds >= 1),
    last_error       text,
    lease_id         uuid,
    lease_expires_at timestamptz,
    next_attempt_at  timestamptz,
    -- What the last message said: the month-to-date cost and the limit it was measured on.
    cost_usd         numeric,
    limit_usd        numeric,
    claimed_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    PRIMARY KEY (organization_id, month, threshold)
);

ALTER TABLE budgets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON budgets
    USING (organization_id = aethermind_current_org())
    WITH CHECK (organization_id = aethermind_current_org());

ALTER TABLE alert_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON alert_deliveries
    USING (organization_id = aethermind_current_org())
    WITH CHECK (organization_id = aethermind_current_org());

GRANT SELECT, INSERT, UPDATE, DELETE ON budgets TO aethermind_app;
-- No DELETE: deliveries are the history that keeps a threshold from firing twice.
GRANT SELECT, INSERT, UPDATE ON alert_deliveries TO aethermind_app;
