-- Audit events: append-only, one hash chain per correlation_id.
CREATE TABLE audit_events (
    event_id             TEXT    PRIMARY KEY NOT NULL,
    version              TEXT    NOT NULL,
    event_type           TEXT    NOT NULL,
    event_timestamp      INTEGER NOT NULL,  -- microseconds since the Unix epoch, UTC
    event_date           TEXT    NOT NULL,  -- UTC date of event_timestamp (YYYY-MM-DD)
    event_category       TEXT    NOT NULL,
    event_action         TEXT    NOT NULL,
    event_outcome        TEXT    NOT NULL CHECK (event_outcome IN ('success', 'failure', 'pending')),
    actor_type           TEXT    NOT NULL,
    actor_id             TEXT    NOT NULL,
    actor_ip             TEXT,
    resource_type        TEXT    NOT NULL,
    resource_id          TEXT    NOT NULL,
    correlation_id       TEXT    NOT NULL,
    parent_event_id      TEXT,
    namespace            TEXT,
    cluster_id           TEXT,
    severity             TEXT,
    duration_ms          INTEGER,
    error_code           TEXT,
    error_message        TEXT,
    retention_days       INTEGER NOT NULL,
    is_sensitive         INTEGER NOT NULL,
    event_data           TEXT    NOT NULL,  -- JSON object
    chain_seq            INTEGER NOT NULL,
    previous_event_hash  TEXT    NOT NULL,
    event_hash           TEXT    NOT NULL,
    hash_algorithm       TEXT    NOT NULL,
    legal_hold           INTEGER NOT NULL DEFAULT 0,
    legal_hold_reason    TEXT,
    legal_hold_placed_by TEXT,
    legal_hold_placed_at INTEGER,
    stored_at            INTEGER NOT NULL,  -- microseconds since the Unix epoch
    UNIQUE (correlation_id, chain_seq)
);

-- Newest-first keyset pages, overall and per filter.
CREATE INDEX audit_events_by_time ON audit_events (event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_by_correlation ON audit_events (correlation_id, event_timestamp DESC, event_id DESC);
CREATE INDEX audit_events_by_type ON audit_events (event_type, event_timestamp DESC);
CREATE INDEX audit_events_by_category ON audit_events (event_category, event_timestamp DESC);

-- The recorded facts never change; only legal-hold bookkeeping may.
CREATE TRIGGER audit_events_immutable
BEFORE UPDATE OF event_id, version, event_type, event_timestamp, event_date, event_category,
    event_action, event_outcome, actor_type, actor_id, actor_ip, resource_type, resource_id,
    correlation_id, parent_event_id, namespace, cluster_id, severity, duration_ms, error_code,
    error_message, retention_days, is_sensitive, event_data, chain_seq, previous_event_hash,
    event_hash, hash_algorithm, stored_at
ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are immutable');
END;

CREATE TRIGGER audit_events_held_not_deleted
BEFORE DELETE ON audit_events
WHEN OLD.legal_hold = 1
BEGIN
    SELECT RAISE(ABORT, 'audit event is under legal hold');
END;
