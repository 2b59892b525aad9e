-- Row-level security for the tables' owner too (FORCE). Pool connections run as
-- aethermind_app, which the policies always bind; but a connection that did not become it
-- (a replica that opened its pool before the role existed) runs as the login role, usually
-- the owner, which plain ENABLE exempts. Forced, the tenant policies bind the owner as well,
-- so such a connection sees only the organization its transaction names.
--
-- The owner's cross-tenant work passes through the owner_maintenance policy, which applies
-- to the owning role only, in two cases:
-- - its own transactions that say so (migrations, retention, creating organizations,
--   budget checks: scope.owner_transaction sets aethermind.maintenance);
-- - the SECURITY DEFINER functions (key lookup, partitions) when called from an
--   application connection: there the role setting is still aethermind_app while the
--   function runs as the owner. A connection that never became aethermind_app has the role
--   setting 'none', so it gets no such pass.
-- A superuser is exempt from row-level security whatever is set, as PostgreSQL defines.
DO $$
DECLARE
    tbl record;
    pass constant text := '(current_setting(''aethermind.maintenance'', true) = ''on'''
                          ' OR current_setting(''role'') = ''aethermind_app'')';
BEGIN
    FOR tbl IN
        SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relrowsecurity AND NOT c.relispartition
           AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl.relname);
        EXECUTE format('CREATE POLICY owner_maintenance ON %I TO %I USING %s WITH CHECK %s',
                       tbl.relname, tbl.owner, pass, pass);
    END LOOP;
END
$$;
