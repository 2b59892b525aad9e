-- Revocations as a query, for replicas that cannot rely on LISTEN/NOTIFY (behind a
-- transaction-mode pooler a LISTEN is bound to whichever server connection ran it, and
-- notifications silently stop). Cross-tenant by nature, so SECURITY DEFINER; it reveals
-- only the ids of keys revoked recently, which identify nothing without the key.
CREATE INDEX api_keys_revoked_at_idx ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE FUNCTION aethermind_keys_revoked_since(since timestamptz)
    RETURNS TABLE (key_id uuid, revoked_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
        SELECT k.id, k.revoked_at FROM api_keys k WHERE k.revoked_at >= since
    $$;

REVOKE ALL ON FUNCTION aethermind_keys_revoked_since(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION aethermind_keys_revoked_since(timestamptz) TO aethermind_app;
