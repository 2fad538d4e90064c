-- Active legal holds. A hold applies to the correlation id: events stored later
-- in a held correlation are held too (trigger below).
CREATE TABLE legal_holds (
    correlation_id TEXT    PRIMARY KEY NOT NULL,
    reason         TEXT    NOT NULL,
    placed_by      TEXT    NOT NULL,
    placed_at      INTEGER NOT NULL  -- microseconds since the Unix epoch
);

CREATE TRIGGER audit_events_inherit_hold
AFTER INSERT ON audit_events
WHEN EXISTS (SELECT 1 FROM legal_holds WHERE correlation_id = NEW.correlation_id)
BEGIN
    UPDATE audit_events SET
        legal_hold = 1,
        legal_hold_reason = (SELECT reason FROM legal_holds WHERE correlation_id = NEW.correlation_id),
        legal_hold_placed_by = (SELECT placed_by FROM legal_holds WHERE correlation_id = NEW.correlation_id),
        legal_hold_placed_at = (SELECT placed_at FROM legal_holds WHERE correlation_id = NEW.correlation_id)
    WHERE event_id = NEW.event_id;
END;
