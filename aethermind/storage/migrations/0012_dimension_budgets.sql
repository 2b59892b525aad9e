-- Budgets per dimension value (storage/budgets.py, BudgetScope): besides the organization's
-- own budget (dimension '' and value ''), one per user or per tag value, e.g. dimension
-- 'tag.team' and value 'search'. Month-to-date cost comes from dimension_rollup_monthly.
-- Deliveries are claimed per (scope, month, threshold) as before per (month, threshold).
ALTER TABLE budgets
    ADD COLUMN dimension text NOT NULL DEFAULT '',
    ADD COLUMN value text NOT NULL DEFAULT '',
    ADD CHECK ((dimension = '') = (value = ''));
ALTER TABLE budgets DROP CONSTRAINT budgets_pkey;
ALTER TABLE budgets ADD PRIMARY KEY (organization_id, dimension, value);

ALTER TABLE alert_deliveries
    ADD COLUMN dimension text NOT NULL DEFAULT '',
    ADD COLUMN value text NOT NULL DEFAULT '';
ALTER TABLE alert_deliveries DROP CONSTRAINT alert_deliveries_pkey;
ALTER TABLE alert_deliveries ADD PRIMARY KEY (organization_id, dimension, value, month, threshold);
