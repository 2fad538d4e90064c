-- Audit events: append-only, one hash chain per correlation_id, range-partitioned
-- by month on event_date (the UTC date of event_timestamp).
--
-- The primary key must contain the partition key, so it is (event_id, event_date).
-- event_date is derived from event_timestamp, which is part of the event, so a true
-- duplicate (the same event sent again) always lands on the same key and
-- `ON CONFLICT (event_id, event_date) DO NOTHING` skips it.
CREATE TABLE audit_events (
    event_id             uuid        NOT NULL,
    version              text        NOT NULL,
    event_type           text        NOT NULL,
    event_timestamp      timestamptz NOT NULL,
    event_date           date        NOT NULL,
    event_category       text        NOT NULL,
    event_action         text        NOT NULL,
    event_outcome        text        NOT NULL CHECK (event_outcome IN ('success', 'failure', 'pending')),
    actor_type           text        NOT NULL,
    actor_id             text        NOT NULL,
    actor_ip             text,
    resource_type        text        NOT NULL,
    resource_id          text        NOT NULL,
    correlation_id       text        NOT NULL,
    parent_event_id      uuid,
    namespace            text,
    cluster_id           text,
    severity             text,
    duration_ms          bigint,
    error_code           text,
    error_message        text,
    retention_days       integer     NOT NULL,
    is_sensitive         boolean     NOT NULL,
    event_data           json        NOT NULL,  -- json, not jsonb: kept exactly as hashed
    chain_seq            bigint      NOT NULL,
    previous_event_hash  text        NOT NULL,
    event_hash           text        NOT NULL,
    hash_algorithm       text        NOT NULL,
    legal_hold           boolean     NOT NULL DEFAULT false,
    legal_hold_reason    text,
    legal_hold_placed_by text,
    legal_hold_placed_at timestamptz,
    stored_at            timestamptz NOT NULL,
    PRIMARY KEY (event_id, event_date)
) PARTITION BY RANGE (event_date);

-- Rows whose month has no partition (yet) land here instead of failing.
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- Newest-first keyset pages, overall and per filter; chains in chain_seq order.
CREATE INDEX audit_events_by_time ON audit_events (event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_by_correlation ON audit_events (correlation_id, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_by_chain ON audit_events (correlation_id, chain_seq);
CREATE INDEX audit_events_by_type ON audit_events (event_type, event_timestamp DESC);
CREATE INDEX audit_events_by_category ON audit_events (event_category, event_timestamp DESC);

-- The head of every chain. A unique index on the partitioned table would have to
-- include event_date, so it could not stop two events of one correlation (dated on
-- different days) from sharing a chain_seq. This unpartitioned table is the guard
-- instead: a batch advances a head with a compare-and-set on chain_seq, so every
-- chain_seq is handed out exactly once (see `store::postgres::insert`).
CREATE TABLE audit_chain_heads (
    correlation_id text   PRIMARY KEY,
    chain_seq      bigint NOT NULL CHECK (chain_seq > 0),
    event_hash     text   NOT NULL
);

-- Active legal holds. A hold applies to the correlation id: events stored later
-- in a held correlation are held too.
CREATE TABLE legal_holds (
    correlation_id text        PRIMARY KEY,
    reason         text        NOT NULL,
    placed_by      text        NOT NULL,
    placed_at      timestamptz NOT NULL
);

-- The recorded facts never change; only legal-hold bookkeeping may.
CREATE FUNCTION audit_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bookkeeping CONSTANT text[] := ARRAY['legal_hold', 'legal_hold_reason',
        'legal_hold_placed_by', 'legal_hold_placed_at'];
BEGIN
    IF (to_jsonb(OLD) - bookkeeping) IS DISTINCT FROM (to_jsonb(NEW) - bookkeeping) THEN
        RAISE EXCEPTION 'audit events are immutable' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_events_immutable BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_immutable();

CREATE FUNCTION audit_events_held_not_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit event % is under legal hold', OLD.event_id
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_held_not_deleted BEFORE DELETE ON audit_events
    FOR EACH ROW WHEN (OLD.legal_hold) EXECUTE FUNCTION audit_events_held_not_deleted();
