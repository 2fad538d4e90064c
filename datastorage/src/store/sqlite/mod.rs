//! The embedded backend: SQLite in WAL mode through rusqlite.
//!
//! SQLite allows one writer at a time, so writes go through a single connection
//! (batches are serialised, which also keeps each hash chain linear without any
//! extra locking), while reads use a small pool of connections that WAL lets run
//! beside the writer. All database work runs on tokio's blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use audit_sdk::api::{LegalHold, LegalHoldAction, LegalHoldActionKind, LegalHoldReleased};
use audit_sdk::{AuditEvent, StoredEvent};
use chrono::Utc;
use rusqlite::{Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    action_kind, action_name, checkpoint_columns, checkpoint_from_columns, same_content,
    ChainChunks, ChainPart, EventStore, InsertOutcome, StoreError,
};
use crate::domain::chain::{ChainHasher, ChainHead};
use crate::domain::checkpoint::{CheckpointSummary, SignedCheckpoint};
use crate::domain::query::EventQuery;

mod export;
mod migrations;
pub mod rows;

pub use migrations::migrate;

/// Most idle reader connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// How long a connection waits for a lock before reporting the store busy.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// SQLite's `synchronous` setting.
///
/// `normal` (the default) survives a crash or `kill -9` of the process; only an
/// operating-system crash or power loss may lose the last transactions. `full`
/// also survives those, at the cost of an fsync per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync the WAL at checkpoints only.
    #[default]
    Normal,
    /// fsync the WAL at every commit.
    Full,
}

/// Settings of the SQLite backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// Database file; its directory is created when missing.
    pub path: PathBuf,
    /// Durability of commits.
    pub synchronous: Synchronous,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/audit.db"),
            synchronous: Synchronous::default(),
        }
    }
}

/// The SQLite event store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    synchronous: Synchronous,
    hasher: ChainHasher,
    /// The only connection that writes; `None` once closed.
    writer: Mutex<Option<Connection>>,
    /// Idle read-only connections.
    readers: Mutex<Vec<Connection>>,
    /// Set by `close`; readers check it instead of the writer's lock.
    closed: AtomicBool,
}

impl SqliteStore {
    /// Opens (creating when needed) the database and applies pending migrations.
    pub async fn open(config: &SqliteConfig, hasher: ChainHasher) -> Result<Self, StoreError> {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(&config, hasher))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    fn open_blocking(config: &SqliteConfig, hasher: ChainHasher) -> Result<Self, StoreError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Internal(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut writer = open_connection(&config.path, config.synchronous, false)
            .map_err(|e| open_error(&config.path, e))?;
        migrate(&mut writer).map_err(|e| open_error(&config.path, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: config.path.clone(),
                synchronous: config.synchronous,
                hasher,
                writer: Mutex::new(Some(writer)),
                readers: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Runs `f` on the writer connection on the blocking pool.
    async fn with_writer<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &ChainHasher) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let conn = guard
                .as_mut()
                .ok_or_else(|| StoreError::Unavailable("store is closed".into()))?;
            f(conn, &inner.hasher).map_err(classify)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// Runs `f` on a pooled reader connection on the blocking pool.
    async fn with_reader<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // Never the writer's lock: a read must not wait behind a batch.
            if inner.closed.load(Ordering::Acquire) {
                return Err(StoreError::Unavailable("store is closed".into()));
            }
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&inner.path, inner.synchronous, true).map_err(classify)?,
            };
            let result = f(&conn).map_err(classify);
            let mut idle = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }
}

fn open_connection(
    path: &Path,
    sync: Synchronous,
    read_only: bool,
) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    debug_assert!(mode.eq_ignore_ascii_case("wal") || path.to_str() == Some(":memory:"));
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        },
    )?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Internal(format!(
        "cannot open SQLite database {}: {e}",
        path.display()
    ))
}

/// Busy/locked/full/IO conditions are worth retrying; anything else is a fault.
fn classify(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | CannotOpen) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// The head of a chain, kept apart from the rows (`0004_chain_heads.sql`).
const SELECT_HEAD: &str =
    "SELECT chain_seq, event_hash FROM audit_chain_heads WHERE correlation_id = ?1";

/// Moves a head forward (its triggers refuse any other move); unchanged heads
/// are a no-op.
const ADVANCE_HEAD: &str = "INSERT INTO audit_chain_heads (correlation_id, chain_seq, event_hash) \
    VALUES (?1, ?2, ?3) ON CONFLICT (correlation_id) DO UPDATE \
    SET chain_seq = excluded.chain_seq, event_hash = excluded.event_hash \
    WHERE excluded.chain_seq > audit_chain_heads.chain_seq";

fn insert_batch_blocking(
    conn: &mut Connection,
    hasher: &ChainHasher,
    events: &[AuditEvent],
) -> rusqlite::Result<InsertOutcome> {
    let stored_at = Utc::now().timestamp_micros();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcome = InsertOutcome::default();
    {
        let mut head_stmt = tx.prepare_cached(SELECT_HEAD)?;
        let mut insert_stmt = tx.prepare_cached(rows::INSERT)?;
        let mut stored_stmt = tx.prepare_cached(&format!(
            "SELECT {} FROM audit_events WHERE event_id = ?1",
            rows::SELECT_COLUMNS
        ))?;
        // Chain heads of the correlations touched by this batch.
        let mut heads: HashMap<&str, (i64, String)> = HashMap::new();
        for (index, event) in events.iter().enumerate() {
            let corr = event.correlation_id.as_str();
            if !heads.contains_key(corr) {
                let head = head_stmt
                    .query_row([corr], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                    .unwrap_or((0, String::new()));
                heads.insert(corr, head);
            }
            let head = heads.get_mut(corr).expect("inserted above");
            let hash = hasher.hash(&head.1, event);
            let link = rows::ChainLink {
                seq: head.0 + 1,
                previous_hash: &head.1,
                hash: &hash,
                algorithm: hasher.algorithm(),
                key_id: hasher.key_id(),
            };
            if rows::insert(&mut insert_stmt, event, &link, stored_at)? == 1 {
                *head = (link.seq, hash);
                outcome.created += 1;
                continue;
            }
            // The id is taken (stored before, or earlier in this batch).
            let id = event.event_id.expect("ingest assigns every event an id");
            let stored = stored_stmt.query_row([id.to_string()], rows::from_row)?;
            if same_content(event, &stored.event) {
                outcome.duplicates += 1;
            } else {
                outcome.conflicts.push(index);
            }
        }
        if !outcome.conflicts.is_empty() {
            // Dropping the transaction rolls the whole batch back.
            return Ok(InsertOutcome::conflicting(outcome.conflicts));
        }
        let mut advance = tx.prepare_cached(ADVANCE_HEAD)?;
        for (corr, (seq, hash)) in &heads {
            if *seq > 0 {
                advance.execute(rusqlite::params![corr, seq, hash])?;
            }
        }
    }
    tx.commit()?;
    Ok(outcome)
}

/// The WHERE clauses of `q`'s filters (not its cursor) and their parameters.
fn filter_sql(q: &EventQuery) -> (Vec<&'static str>, Vec<Box<dyn ToSql>>) {
    let mut clauses: Vec<&'static str> = Vec::new();
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    let mut push = |clause: &'static str, value: Box<dyn ToSql>| {
        clauses.push(clause);
        args.push(value);
    };
    if let Some(v) = &q.correlation_id {
        push("correlation_id = ?", Box::new(v.clone()));
    }
    if let Some(v) = &q.event_type {
        push("event_type = ?", Box::new(v.clone()));
    }
    if let Some(v) = &q.event_category {
        push("event_category = ?", Box::new(v.clone()));
    }
    if let Some(v) = q.event_outcome {
        push("event_outcome = ?", Box::new(v.as_str()));
    }
    if let Some(v) = &q.severity {
        push("severity = ?", Box::new(v.clone()));
    }
    if let Some(v) = q.since {
        push("event_timestamp >= ?", Box::new(v.timestamp_micros()));
    }
    if let Some(v) = q.until {
        push("event_timestamp <= ?", Box::new(v.timestamp_micros()));
    }
    if let Some(d) = &q.detail {
        // json_each compares keys as plain text (a JSON path would misread
        // quotes, dots and brackets in a key), and both are parameters: no
        // caller text reaches the SQL. Only string values match, as on PostgreSQL.
        clauses.push(
            "EXISTS (SELECT 1 FROM json_each(event_data) AS d \
             WHERE d.key = ? AND d.type = 'text' AND d.value = ?)",
        );
        args.push(Box::new(d.key.clone()));
        args.push(Box::new(d.value.clone()));
    }
    (clauses, args)
}

fn where_sql(clauses: &[&str]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

fn count_blocking(conn: &Connection, q: &EventQuery) -> rusqlite::Result<u64> {
    let (clauses, args) = filter_sql(q);
    let sql = format!("SELECT count(*) FROM audit_events {}", where_sql(&clauses));
    let mut stmt = conn.prepare_cached(&sql)?;
    let params: Vec<&dyn ToSql> = args.iter().map(AsRef::as_ref).collect();
    let n: i64 = stmt.query_row(params.as_slice(), |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

fn query_blocking(conn: &Connection, q: &EventQuery) -> rusqlite::Result<Vec<StoredEvent>> {
    let (mut clauses, mut args) = filter_sql(q);
    if let Some(c) = q.cursor {
        clauses.push("(event_timestamp, event_id) < (?, ?)");
        args.push(Box::new(c.timestamp_micros));
        args.push(Box::new(c.event_id.to_string()));
    }
    let filter = where_sql(&clauses);
    // The page size and offset are parameters: the statement text depends only
    // on which filters are present, so the statement cache stays bounded.
    args.push(Box::new(q.limit as i64 + 1));
    args.push(Box::new(q.offset as i64));
    let sql = format!(
        "SELECT {} FROM audit_events {filter} \
         ORDER BY event_timestamp DESC, event_id DESC LIMIT ? OFFSET ?",
        rows::SELECT_COLUMNS,
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let params: Vec<&dyn ToSql> = args.iter().map(AsRef::as_ref).collect();
    let rows = stmt.query_map(params.as_slice(), rows::from_row)?;
    rows.collect()
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn insert_batch(&self, events: Vec<AuditEvent>) -> Result<InsertOutcome, StoreError> {
        self.with_writer(move |conn, hasher| insert_batch_blocking(conn, hasher, &events))
            .await
    }

    async fn get(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.with_reader(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {} FROM audit_events WHERE event_id = ?1",
                rows::SELECT_COLUMNS
            ))?
            .query_row([event_id.to_string()], rows::from_row)
            .optional()
        })
        .await
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let query = query.clone();
        self.with_reader(move |conn| query_blocking(conn, &query))
            .await
    }

    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        let query = query.clone();
        self.with_reader(move |conn| count_blocking(conn, &query))
            .await
    }

    async fn chain(&self, correlation_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let corr = correlation_id.to_owned();
        self.with_reader(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM audit_events WHERE correlation_id = ?1 ORDER BY chain_seq",
                rows::SELECT_COLUMNS
            ))?;
            let rows = stmt.query_map([corr], rows::from_row)?;
            rows.collect()
        })
        .await
    }

    async fn chain_with_head(
        &self,
        correlation_id: &str,
    ) -> Result<(Vec<StoredEvent>, Option<ChainHead>), StoreError> {
        let corr = correlation_id.to_owned();
        self.with_reader(move |conn| {
            // One read transaction: the rows and the head of one snapshot.
            let tx = conn.unchecked_transaction()?;
            let chain = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {} FROM audit_events WHERE correlation_id = ?1 ORDER BY chain_seq",
                    rows::SELECT_COLUMNS
                ))?;
                let rows = stmt.query_map([&corr], rows::from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let head = tx
                .prepare_cached(SELECT_HEAD)?
                .query_row([&corr], |r| {
                    Ok(ChainHead {
                        chain_seq: r.get(0)?,
                        event_hash: r.get(1)?,
                    })
                })
                .optional()?;
            tx.commit()?;
            Ok((chain, head))
        })
        .await
    }

    async fn chain_chunks(
        &self,
        correlation_id: &str,
        chunk_size: usize,
    ) -> Result<ChainChunks, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let corr = correlation_id.to_owned();
        let store = self.clone();
        let chunk_size = chunk_size.max(1) as i64;
        tokio::spawn(async move {
            let sender = tx.clone();
            let read = store.with_reader(move |conn| {
                // One read transaction: the head and every chunk of one snapshot.
                let db = conn.unchecked_transaction()?;
                let head = db
                    .prepare_cached(SELECT_HEAD)?
                    .query_row([&corr], |r| {
                        Ok(ChainHead {
                            chain_seq: r.get(0)?,
                            event_hash: r.get(1)?,
                        })
                    })
                    .optional()?;
                if sender.blocking_send(Ok(ChainPart::Head(head))).is_err() {
                    return Ok(());
                }
                let mut stmt = db.prepare_cached(&format!(
                    "SELECT {} FROM audit_events WHERE correlation_id = ?1 AND chain_seq > ?2 \
                     ORDER BY chain_seq LIMIT ?3",
                    rows::SELECT_COLUMNS
                ))?;
                let mut after = i64::MIN;
                loop {
                    let chunk = stmt
                        .query_map(rusqlite::params![corr, after, chunk_size], rows::from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    let Some(last) = chunk.last() else { break };
                    after = last.chain_seq;
                    let full = chunk.len() as i64 == chunk_size;
                    if sender.blocking_send(Ok(ChainPart::Events(chunk))).is_err() || !full {
                        break;
                    }
                }
                Ok(())
            });
            if let Err(e) = read.await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }

    async fn export_chunks(
        &self,
        query: &EventQuery,
        chunk_size: usize,
    ) -> Result<super::ExportChunks, StoreError> {
        self.export_chunks_impl(query, chunk_size)
    }

    async fn chain_heads(&self) -> Result<Vec<(String, ChainHead)>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT correlation_id, chain_seq, event_hash FROM audit_chain_heads \
                 ORDER BY correlation_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    ChainHead {
                        chain_seq: r.get(1)?,
                        event_hash: r.get(2)?,
                    },
                ))
            })?;
            rows.collect()
        })
        .await
    }

    async fn correlation_ids(&self) -> Result<Vec<String>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT correlation_id FROM audit_chain_heads \
                 UNION SELECT correlation_id FROM audit_events ORDER BY 1",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn append_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let (summary, heads) = checkpoint_columns(checkpoint);
        let id = checkpoint.summary.checkpoint_id.to_string();
        let at = checkpoint.summary.created_at.timestamp_micros();
        self.with_writer(move |conn, _| {
            conn.prepare_cached(
                "INSERT INTO audit_checkpoints (checkpoint_id, created_at, summary, heads) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(rusqlite::params![id, at, summary, heads])?;
            Ok(())
        })
        .await
    }

    async fn checkpoints(&self, limit: usize) -> Result<Vec<CheckpointSummary>, StoreError> {
        let texts: Vec<String> = self
            .with_reader(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT summary FROM audit_checkpoints \
                     ORDER BY created_at DESC, checkpoint_id DESC LIMIT ?1",
                )?;
                let rows = stmt.query_map([limit as i64], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        texts
            .iter()
            .map(|t| checkpoint_from_columns(t, None).map(|(s, _)| s))
            .collect()
    }

    async fn checkpoint(&self, id: Option<Uuid>) -> Result<Option<SignedCheckpoint>, StoreError> {
        let texts: Option<(String, String)> = self
            .with_reader(move |conn| {
                let read = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
                match id {
                    Some(id) => conn
                        .prepare_cached(
                            "SELECT summary, heads FROM audit_checkpoints WHERE checkpoint_id = ?1",
                        )?
                        .query_row([id.to_string()], read)
                        .optional(),
                    None => conn
                        .prepare_cached(
                            "SELECT summary, heads FROM audit_checkpoints \
                             ORDER BY created_at DESC, checkpoint_id DESC LIMIT 1",
                        )?
                        .query_row([], read)
                        .optional(),
                }
            })
            .await?;
        texts
            .map(|(s, h)| {
                checkpoint_from_columns(&s, Some(&h))
                    .map(|(summary, heads)| SignedCheckpoint { summary, heads })
            })
            .transpose()
    }

    async fn place_legal_hold(
        &self,
        correlation_id: &str,
        reason: &str,
        placed_by: &str,
    ) -> Result<(LegalHold, bool), StoreError> {
        let (corr, reason, by) = (
            correlation_id.to_owned(),
            reason.to_owned(),
            placed_by.to_owned(),
        );
        self.with_writer(move |conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = Utc::now().timestamp_micros();
            let created = tx.execute(
                "INSERT INTO legal_holds (correlation_id, reason, placed_by, placed_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (correlation_id) DO NOTHING",
                rusqlite::params![corr, reason, by, now],
            )? == 1;
            let held = tx.execute(
                "UPDATE audit_events SET legal_hold = 1, legal_hold_reason = h.reason, \
                 legal_hold_placed_by = h.placed_by, legal_hold_placed_at = h.placed_at \
                 FROM legal_holds h WHERE h.correlation_id = ?1 \
                 AND audit_events.correlation_id = ?1 AND audit_events.legal_hold = 0",
                [&corr],
            )?;
            if created {
                record_action(
                    &tx,
                    &corr,
                    LegalHoldActionKind::Placed,
                    &reason,
                    &by,
                    now,
                    held,
                )?;
            }
            let hold = tx.query_row(
                &format!("{SELECT_HOLDS} WHERE h.correlation_id = ?1"),
                [&corr],
                hold_from_row,
            )?;
            tx.commit()?;
            Ok((hold, created))
        })
        .await
    }

    async fn release_legal_hold(
        &self,
        correlation_id: &str,
        release_reason: &str,
        released_by: &str,
    ) -> Result<Option<LegalHoldReleased>, StoreError> {
        let corr = correlation_id.to_owned();
        let (reason, by) = (release_reason.to_owned(), released_by.to_owned());
        self.with_writer(move |conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if tx.execute("DELETE FROM legal_holds WHERE correlation_id = ?1", [&corr])? == 0 {
                return Ok(None);
            }
            let released = tx.execute(
                "UPDATE audit_events SET legal_hold = 0, legal_hold_reason = NULL, \
                 legal_hold_placed_by = NULL, legal_hold_placed_at = NULL \
                 WHERE correlation_id = ?1 AND legal_hold = 1",
                [&corr],
            )?;
            let now = Utc::now().timestamp_micros();
            record_action(
                &tx,
                &corr,
                LegalHoldActionKind::Released,
                &reason,
                &by,
                now,
                released,
            )?;
            tx.commit()?;
            Ok(Some(LegalHoldReleased {
                correlation_id: corr,
                release_reason: reason,
                released_by: by,
                released_at: chrono::DateTime::<Utc>::from_timestamp_micros(now)
                    .unwrap_or_default(),
                events_released: released as u64,
            }))
        })
        .await
    }

    async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{SELECT_HOLDS} ORDER BY h.placed_at, h.correlation_id"
            ))?;
            let rows = stmt.query_map([], hold_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn legal_hold_history(
        &self,
        correlation_id: &str,
    ) -> Result<Vec<LegalHoldAction>, StoreError> {
        let corr = correlation_id.to_owned();
        self.with_reader(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT action, reason, actor, at, events FROM legal_hold_history \
                 WHERE correlation_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([corr], action_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_reader(|conn| {
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        })
        .await
    }

    async fn close(&self) {
        let inner = self.inner.clone();
        self.inner.closed.store(true, Ordering::Release);
        let closed = tokio::task::spawn_blocking(move || {
            inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            let writer = inner
                .writer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(conn) = writer {
                // Fold the WAL back into the main file so the database is one
                // self-contained file after a clean shutdown.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint at close failed");
                }
                if let Err((_, e)) = conn.close() {
                    tracing::warn!(error = %e, "closing SQLite failed");
                }
            }
        })
        .await;
        if let Err(e) = closed {
            tracing::warn!(error = %e, "closing SQLite panicked");
        }
    }
}

/// Active holds with their held-event counts; append a WHERE / ORDER BY.
const SELECT_HOLDS: &str = "SELECT h.correlation_id, h.reason, h.placed_by, h.placed_at, \
    (SELECT count(*) FROM audit_events e WHERE e.correlation_id = h.correlation_id \
     AND e.legal_hold = 1) FROM legal_holds h";

fn hold_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LegalHold> {
    let micros: i64 = row.get(3)?;
    Ok(LegalHold {
        correlation_id: row.get(0)?,
        reason: row.get(1)?,
        placed_by: row.get(2)?,
        placed_at: chrono::DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default(),
        events_affected: row.get::<_, i64>(4)?.max(0) as u64,
    })
}

/// Appends one entry to the legal-hold journal (inside the hold change's transaction).
fn record_action(
    tx: &rusqlite::Transaction<'_>,
    correlation_id: &str,
    kind: LegalHoldActionKind,
    reason: &str,
    actor: &str,
    at_micros: i64,
    events: usize,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO legal_hold_history (correlation_id, action, reason, actor, at, events) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![
        correlation_id,
        action_name(kind),
        reason,
        actor,
        at_micros,
        events as i64
    ])?;
    Ok(())
}

fn action_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LegalHoldAction> {
    let name: String = row.get(0)?;
    let action = action_kind(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown legal-hold action {name:?}").into(),
        )
    })?;
    let micros: i64 = row.get(3)?;
    Ok(LegalHoldAction {
        action,
        reason: row.get(1)?,
        actor: row.get(2)?,
        at: chrono::DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default(),
        events: row.get::<_, i64>(4)?.max(0) as u64,
    })
}
