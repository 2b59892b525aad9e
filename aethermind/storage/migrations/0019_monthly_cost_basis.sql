-- Budgets per user and per tag read the monthly dimension rollup: it sums the reported
-- costs too (provided_cost, provided_calls, cost_of_provided), so those budgets count the
-- organization's cost basis (storage/cost_basis.py) like its own budget does. Folded in
-- from the daily dimension rollup, which already sums them.
ALTER TABLE dimension_rollup_monthly
    ADD COLUMN provided_cost numeric NOT NULL DEFAULT 0,
    ADD COLUMN provided_calls bigint NOT NULL DEFAULT 0,
    ADD COLUMN cost_of_provided numeric NOT NULL DEFAULT 0;

WITH m AS (
    SELECT organization_id, dimension, value, date_trunc('month', day, 'UTC') AS month,
           sum(provided_cost) AS provided_cost, sum(provided_calls) AS provided_calls,
           sum(cost_of_provided) AS cost_of_provided
      FROM dimension_rollup_daily
     GROUP BY 1, 2, 3, 4
    HAVING sum(provided_calls) > 0
)
UPDATE dimension_rollup_monthly r
   SET provided_cost = m.provided_cost, provided_calls = m.provided_calls,
       cost_of_provided = m.cost_of_provided
  FROM m
 WHERE r.organization_id = m.organization_id AND r.dimension = m.dimension
   AND r.value = m.value AND r.month = m.month;
