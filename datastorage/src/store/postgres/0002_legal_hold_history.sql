-- Append-only journal of legal-hold placements and releases, written in the same
-- transaction as the change to legal_holds (which forgets a hold once released).
CREATE TABLE legal_hold_history (
    id             bigserial   PRIMARY KEY,
    correlation_id text        NOT NULL,
    action         text        NOT NULL CHECK (action IN ('placed', 'released')),
    reason         text        NOT NULL,  -- the placement reason or the release reason
    actor          text        NOT NULL,
    at             timestamptz NOT NULL,
    events         bigint      NOT NULL CHECK (events >= 0)  -- events held / released
);

CREATE INDEX legal_hold_history_by_correlation ON legal_hold_history (correlation_id, id);

-- Holds active before this migration get their placement recorded (events: those
-- held now), so that their later release is not an entry without a placement.
INSERT INTO legal_hold_history (correlation_id, action, reason, actor, at, events)
SELECT h.correlation_id, 'placed', h.reason, h.placed_by, h.placed_at,
    (SELECT count(*) FROM audit_events e WHERE e.correlation_id = h.correlation_id
     AND e.legal_hold)
FROM legal_holds h ORDER BY h.placed_at, h.correlation_id;

CREATE FUNCTION legal_hold_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the legal-hold history is append-only'
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER legal_hold_history_append_only BEFORE UPDATE OR DELETE ON legal_hold_history
    FOR EACH ROW EXECUTE FUNCTION legal_hold_history_append_only();

CREATE TRIGGER legal_hold_history_no_truncate BEFORE TRUNCATE ON legal_hold_history
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_history_append_only();
