//! Mapping between events and `audit_events` rows.

use audit_sdk::{AuditEvent, EventOutcome, StoredEvent};
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::types::Type;
use rusqlite::Row;
use uuid::Uuid;

/// Every column a [`StoredEvent`] is read from, in the order [`from_row`] expects.
pub const SELECT_COLUMNS: &str = "event_id, version, event_type, event_timestamp, event_date, \
    event_category, event_action, event_outcome, actor_type, actor_id, actor_ip, resource_type, \
    resource_id, correlation_id, parent_event_id, namespace, cluster_id, severity, duration_ms, \
    error_code, error_message, retention_days, is_sensitive, event_data, chain_seq, \
    previous_event_hash, event_hash, hash_algorithm, legal_hold, hash_key_id";

/// The insert statement; conflicts on `event_id` are skipped (idempotent ingest).
pub const INSERT: &str = "INSERT INTO audit_events (event_id, version, event_type, \
    event_timestamp, event_date, event_category, event_action, event_outcome, actor_type, \
    actor_id, actor_ip, resource_type, resource_id, correlation_id, parent_event_id, namespace, \
    cluster_id, severity, duration_ms, error_code, error_message, retention_days, is_sensitive, \
    event_data, chain_seq, previous_event_hash, event_hash, hash_algorithm, stored_at, \
    hash_key_id) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
    ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30) ON CONFLICT (event_id) DO NOTHING";

/// Chain fields computed at insert time.
#[derive(Debug)]
pub struct ChainLink<'a> {
    pub seq: i64,
    pub previous_hash: &'a str,
    pub hash: &'a str,
    pub algorithm: &'a str,
    pub key_id: Option<&'a str>,
}

/// Executes [`INSERT`] for one event; returns 1 when stored, 0 when a duplicate.
pub fn insert(
    stmt: &mut rusqlite::CachedStatement<'_>,
    e: &AuditEvent,
    link: &ChainLink<'_>,
    stored_at: i64,
) -> rusqlite::Result<usize> {
    let event_id = e.event_id.expect("ingest assigns every event an id");
    let data = serde_json::to_string(&e.event_data).expect("JSON maps always serialise");
    stmt.execute(rusqlite::params![
        event_id.to_string(),
        e.version,
        e.event_type,
        e.event_timestamp.timestamp_micros(),
        e.event_timestamp.date_naive().to_string(),
        e.event_category,
        e.event_action,
        e.event_outcome.as_str(),
        e.actor_type,
        e.actor_id,
        e.actor_ip,
        e.resource_type,
        e.resource_id,
        e.correlation_id,
        e.parent_event_id.map(|p| p.to_string()),
        e.namespace,
        e.cluster_id,
        e.severity,
        e.duration_ms,
        e.error_code,
        e.error_message,
        e.retention_days,
        e.is_sensitive,
        data,
        link.seq,
        link.previous_hash,
        link.hash,
        link.algorithm,
        stored_at,
        link.key_id,
    ])
}

fn bad(col: usize, ty: Type, msg: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, ty, msg.into().into())
}

fn uuid_at(row: &Row<'_>, col: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(col)?;
    Uuid::parse_str(&text).map_err(|e| bad(col, Type::Text, e.to_string()))
}

/// Reads a row selected with [`SELECT_COLUMNS`].
pub fn from_row(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let micros: i64 = row.get(3)?;
    let event_timestamp = DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| bad(3, Type::Integer, "timestamp out of range"))?;
    let event_date: String = row.get(4)?;
    let outcome: String = row.get(7)?;
    let parent: Option<String> = row.get(14)?;
    let data: String = row.get(23)?;
    let event = AuditEvent {
        event_id: Some(uuid_at(row, 0)?),
        version: row.get(1)?,
        event_type: row.get(2)?,
        event_timestamp,
        event_category: row.get(5)?,
        event_action: row.get(6)?,
        event_outcome: EventOutcome::parse(&outcome)
            .ok_or_else(|| bad(7, Type::Text, format!("unknown outcome {outcome:?}")))?,
        actor_type: row.get(8)?,
        actor_id: row.get(9)?,
        actor_ip: row.get(10)?,
        resource_type: row.get(11)?,
        resource_id: row.get(12)?,
        correlation_id: row.get(13)?,
        parent_event_id: parent
            .map(|p| Uuid::parse_str(&p).map_err(|e| bad(14, Type::Text, e.to_string())))
            .transpose()?,
        namespace: row.get(15)?,
        cluster_id: row.get(16)?,
        severity: row.get(17)?,
        duration_ms: row.get(18)?,
        error_code: row.get(19)?,
        error_message: row.get(20)?,
        retention_days: row.get(21)?,
        is_sensitive: row.get(22)?,
        // Tampering may leave any text here; verification must still see the row.
        event_data: match serde_json::from_str(&data) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(other) => serde_json::Map::from_iter([("_invalid".to_owned(), other)]),
            Err(_) => serde_json::Map::from_iter([("_unparseable".to_owned(), data.into())]),
        },
    };
    Ok(StoredEvent {
        event,
        event_date: NaiveDate::parse_from_str(&event_date, "%Y-%m-%d")
            .map_err(|e| bad(4, Type::Text, e.to_string()))?,
        chain_seq: row.get(24)?,
        previous_event_hash: row.get(25)?,
        event_hash: row.get(26)?,
        hash_algorithm: row.get(27)?,
        legal_hold: row.get(28)?,
        hash_key_id: row.get(29)?,
    })
}
