-- One event_id, one event. The partitioned table's primary key must contain the
-- partition key (event_id, event_date), so it cannot stop the same id from being
-- stored again with a timestamp on another day. This unpartitioned table holds
-- every id once, with the date that locates its row; a batch claims its ids here
-- first (`store::postgres::insert`), and a taken id is a replay or a conflict.
CREATE TABLE audit_event_ids (
    event_id   uuid PRIMARY KEY,
    event_date date NOT NULL
);

-- Ids stored before this migration; where the old key let an id in twice, the
-- first stored row is the one that counts.
INSERT INTO audit_event_ids (event_id, event_date)
SELECT DISTINCT ON (event_id) event_id, event_date FROM audit_events
ORDER BY event_id, stored_at, event_date;
