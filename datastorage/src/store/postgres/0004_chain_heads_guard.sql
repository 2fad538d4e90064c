-- audit_chain_heads is what verify-chain compares the rows with: it only moves
-- forward, and is never deleted or truncated, so deleting the newest events of
-- a chain (or all of them) shows as a chain shorter than its head.
CREATE FUNCTION audit_chain_heads_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.correlation_id IS DISTINCT FROM OLD.correlation_id
        OR NEW.chain_seq <= OLD.chain_seq THEN
        RAISE EXCEPTION 'chain heads only move forward' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_chain_heads_forward_only BEFORE UPDATE OR DELETE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION audit_chain_heads_forward_only();

CREATE TRIGGER audit_chain_heads_no_truncate BEFORE TRUNCATE ON audit_chain_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_heads_forward_only();
