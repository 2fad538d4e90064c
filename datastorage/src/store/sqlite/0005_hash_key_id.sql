-- Which HMAC key hashed each event, so verification uses the key the row names
-- and rotating the key leaves older events verifiable. NULL for sha256 rows and
-- for keyed rows from before this column.
ALTER TABLE audit_events ADD COLUMN hash_key_id TEXT;

-- The immutability trigger names its columns; it must cover the new one.
DROP TRIGGER audit_events_immutable;
CREATE TRIGGER audit_events_immutable
BEFORE UPDATE OF event_id, version, event_type, event_timestamp, event_date, event_category,
    event_action, event_outcome, actor_type, actor_id, actor_ip, resource_type, resource_id,
    correlation_id, parent_event_id, namespace, cluster_id, severity, duration_ms, error_code,
    error_message, retention_days, is_sensitive, event_data, chain_seq, previous_event_hash,
    event_hash, hash_algorithm, hash_key_id, stored_at
ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are immutable');
END;
