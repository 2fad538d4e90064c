-- The head of every chain, kept apart from the rows: an insert moves it forward,
-- nothing moves it back, so deleting the newest events of a chain (or all of
-- them) shows as a chain shorter than its head, and new events never reuse the
-- deleted sequence numbers.
CREATE TABLE audit_chain_heads (
    correlation_id TEXT    PRIMARY KEY NOT NULL,
    chain_seq      INTEGER NOT NULL CHECK (chain_seq > 0),
    event_hash     TEXT    NOT NULL
);

-- Chains stored before this migration: their newest remaining row.
INSERT INTO audit_chain_heads (correlation_id, chain_seq, event_hash)
SELECT e.correlation_id, e.chain_seq, e.event_hash FROM audit_events e
WHERE e.chain_seq = (SELECT max(chain_seq) FROM audit_events WHERE correlation_id = e.correlation_id);

CREATE TRIGGER audit_chain_heads_forward_only
BEFORE UPDATE ON audit_chain_heads
WHEN NEW.correlation_id IS NOT OLD.correlation_id OR NEW.chain_seq <= OLD.chain_seq
BEGIN
    SELECT RAISE(ABORT, 'chain heads only move forward');
END;

CREATE TRIGGER audit_chain_heads_kept
BEFORE DELETE ON audit_chain_heads
BEGIN
    SELECT RAISE(ABORT, 'chain heads are never deleted');
END;
