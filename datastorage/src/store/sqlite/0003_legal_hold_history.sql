-- Append-only journal of legal-hold placements and releases, written in the same
-- transaction as the change to legal_holds (which forgets a hold once released).
CREATE TABLE legal_hold_history (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    correlation_id TEXT    NOT NULL,
    action         TEXT    NOT NULL CHECK (action IN ('placed', 'released')),
    reason         TEXT    NOT NULL,  -- the placement reason or the release reason
    actor          TEXT    NOT NULL,
    at             INTEGER NOT NULL,  -- microseconds since the Unix epoch
    events         INTEGER NOT NULL CHECK (events >= 0)  -- events held / released
);

CREATE INDEX legal_hold_history_by_correlation ON legal_hold_history (correlation_id, id);

-- Holds active before this migration get their placement recorded (events: those
-- held now), so that their later release is not an entry without a placement.
INSERT INTO legal_hold_history (correlation_id, action, reason, actor, at, events)
SELECT h.correlation_id, 'placed', h.reason, h.placed_by, h.placed_at,
    (SELECT count(*) FROM audit_events e WHERE e.correlation_id = h.correlation_id
     AND e.legal_hold = 1)
FROM legal_holds h ORDER BY h.placed_at, h.correlation_id;

CREATE TRIGGER legal_hold_history_no_update
BEFORE UPDATE ON legal_hold_history
BEGIN
    SELECT RAISE(ABORT, 'the legal-hold history is append-only');
END;

CREATE TRIGGER legal_hold_history_no_delete
BEFORE DELETE ON legal_hold_history
BEGIN
    SELECT RAISE(ABORT, 'the legal-hold history is append-only');
END;
