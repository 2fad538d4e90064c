-- Every batch moves the head of each correlation it writes, so a head row is
-- updated once per batch for as long as its chain grows. Two things made that
-- cost as much as inserting the events themselves:
--
-- * a PL/pgSQL call per updated row to check "forward only". The check now sits
--   in the trigger's WHEN clause, evaluated without entering PL/pgSQL; the
--   function still runs, and raises, for every update that would not move a
--   head forward, and for every DELETE (and TRUNCATE), exactly as before.
-- * full pages: an update that cannot stay on its page (HOT) writes a new index
--   entry too. Pages of this small table keep room for the next versions.
DROP TRIGGER audit_chain_heads_forward_only ON audit_chain_heads;

CREATE TRIGGER audit_chain_heads_forward_only BEFORE UPDATE ON audit_chain_heads
    FOR EACH ROW
    WHEN (NEW.correlation_id IS DISTINCT FROM OLD.correlation_id
          OR NEW.chain_seq <= OLD.chain_seq)
    EXECUTE FUNCTION audit_chain_heads_forward_only();

CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads
    FOR EACH ROW EXECUTE FUNCTION audit_chain_heads_forward_only();

ALTER TABLE audit_chain_heads SET (fillfactor = 50);
