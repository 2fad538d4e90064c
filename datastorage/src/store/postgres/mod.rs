//! The production backend: PostgreSQL through tokio-postgres and a deadpool pool.
//!
//! `audit_events` is range-partitioned by month on `event_date` (see
//! `0001_init.sql` and [`partitions`]). A batch is one transaction of a fixed
//! number of round trips, whatever its size ([`insert`]): it claims its ids in
//! the unpartitioned `audit_event_ids`, so one `event_id` is stored once
//! whatever its date (a taken id is a replay or a conflict), then expands its
//! rows from arrays by `UNNEST` into one `INSERT`.
//!
//! Several replicas may write the same correlation at once. Each batch takes a
//! transaction-scoped advisory lock per correlation id it writes (in ascending
//! lock-key order, so two batches can never wait on each other in a cycle), then
//! reads the chain heads, hashes, inserts, and moves each head forward with a
//! compare-and-set on `audit_chain_heads`. The lock keeps the chains linear; the
//! compare-and-set (and the heads' primary key) makes a `chain_seq` handed out twice
//! impossible even if something wrote without the lock.
//!
//! Connection failures, pool timeouts and server shutdowns map to
//! [`StoreError::Unavailable`] (503 with `Retry-After` at the HTTP edge); broken
//! connections are discarded by the pool, so service resumes by itself once
//! PostgreSQL is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use audit_sdk::api::{LegalHold, LegalHoldAction, LegalHoldActionKind, LegalHoldReleased};
use audit_sdk::{AuditEvent, EventOutcome, StoredEvent};
use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    action_kind, action_name, checkpoint_columns, checkpoint_from_columns, ChainChunks, ChainPart,
    EventStore, InsertOutcome, StoreError,
};
use crate::domain::chain::{ChainHasher, ChainHead};
use crate::domain::checkpoint::{CheckpointSummary, SignedCheckpoint};
use crate::domain::query::EventQuery;

mod config;
mod export;
mod insert;
mod migrations;
pub mod partitions;
pub mod roles;

pub use config::{PostgresConfig, PASSWORD_ENV};
pub use insert::{COPY_COLUMNS, COPY_TYPES, EVENT_AND_LINK_COLUMNS};
pub use migrations::latest_version;

/// Every column a [`StoredEvent`] is read from, in the order [`from_row`] expects.
const SELECT_COLUMNS: &str = "event_id, version, event_type, event_timestamp, event_date, \
    event_category, event_action, event_outcome, actor_type, actor_id, actor_ip, resource_type, \
    resource_id, correlation_id, parent_event_id, namespace, cluster_id, severity, duration_ms, \
    error_code, error_message, retention_days, is_sensitive, event_data::text, chain_seq, \
    previous_event_hash, event_hash, hash_algorithm, legal_hold, hash_key_id";

/// Takes the advisory lock of every correlation id in `$1`, in lock-key order
/// (batches and legal-hold changes alike).
const LOCK_CORRELATIONS: &str = "SELECT pg_advisory_xact_lock(k) \
    FROM (SELECT DISTINCT hashtext(c) AS k FROM unnest($1::text[]) AS c) AS keys ORDER BY k";

/// [`SELECT_COLUMNS`] qualified by a table alias.
fn prefixed_columns(alias: &str) -> String {
    SELECT_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The PostgreSQL event store.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    hasher: ChainHasher,
    /// Set by `close`; refuses further work even while the pool drains.
    closed: AtomicBool,
    /// Stops the partition maintenance task.
    maintenance: CancellationToken,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.inner.pool.status())
            .field("hasher", &self.inner.hasher)
            .finish_non_exhaustive()
    }
}

/// Builds the connection pool (connections open lazily).
fn pool(config: &PostgresConfig) -> Result<Pool, StoreError> {
    let pg = config
        .pg_config()
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            // A connection whose socket closed (server restart) is dropped on
            // return; a query on a connection that died silently fails once with
            // `Unavailable` and is then discarded the same way.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.wait_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| StoreError::Internal(format!("building the PostgreSQL pool: {e}")))
}

/// Applies pending migrations and creates the partitions ahead (the work of
/// `datastorage migrate`); returns how many migrations ran.
pub async fn migrate(config: &PostgresConfig) -> Result<usize, StoreError> {
    let pool = pool(config)?;
    prepare(&pool, config, true).await
}

/// Connects (retrying transient failures for `startup_timeout`), applies the
/// migrations when `migrate` is set, and creates the partitions ahead; returns
/// how many migrations ran.
async fn prepare(pool: &Pool, config: &PostgresConfig, migrate: bool) -> Result<usize, StoreError> {
    let attempt = || async {
        let mut client = pool.get().await.map_err(pool_error)?;
        let ran = if migrate {
            migrations::migrate(&mut client).await.map_err(classify)?
        } else {
            0
        };
        if migrate || config.manage_partitions {
            partitions::ensure(&mut client).await.map_err(classify)?;
        }
        if let (true, Some(role)) = (migrate, &config.serving_role) {
            roles::grant_serving(&client, role)
                .await
                .map_err(classify)?;
        }
        Ok(ran)
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(config.startup_timeout))
        .without_max_times();
    attempt
        .retry(backoff)
        .when(|e: &StoreError| matches!(e, StoreError::Unavailable(_)))
        .notify(|e: &StoreError, wait: Duration| {
            tracing::warn!(error = %e, host = %config.host, port = config.port,
                retry_in = ?wait, "PostgreSQL is not reachable yet; waiting");
        })
        .await
}

impl PostgresStore {
    /// Connects (waiting up to `startup_timeout` for the server), applies pending
    /// migrations (unless `migrate_on_start` is off),
    /// creates the partitions ahead and starts the daily partition check.
    pub async fn open(config: &PostgresConfig, hasher: ChainHasher) -> Result<Self, StoreError> {
        let pool = pool(config)?;
        prepare(&pool, config, config.migrate_on_start).await?;
        let maintenance = CancellationToken::new();
        if config.manage_partitions {
            tokio::spawn(maintain_partitions(
                pool.clone(),
                config.partition_check_interval,
                maintenance.clone(),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                hasher,
                closed: AtomicBool::new(false),
                maintenance,
            }),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("store is closed".into()));
        }
        self.inner.pool.get().await.map_err(pool_error)
    }
}

/// Checks the partitions ahead every `interval` until cancelled.
async fn maintain_partitions(pool: Pool, interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await; // the first tick is immediate; `open` just did the work
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = match pool.get().await {
            Ok(mut client) => partitions::ensure(&mut client).await.map_err(classify),
            Err(e) => Err(pool_error(e)),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "partition maintenance failed; retrying at the next check");
        }
    }
}

/// Connection-level trouble is worth retrying; anything else is a fault.
/// A read-only transaction on one snapshot (repeatable read): every read
/// inside it (a chain's rows and its head, an export's chunks) sees the same
/// committed state, so a concurrent insert cannot show as a broken link.
async fn read_snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(classify)
}

fn classify(e: tokio_postgres::Error) -> StoreError {
    let transient = match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || code.starts_with("57P") // admin/crash shutdown, cannot connect now
                || matches!(code, "40001" | "40P01" | "55P03" | "57014")
        }
        // No SQLSTATE: the socket closed, an I/O error or a timeout.
        None => {
            e.is_closed()
                || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
                || e.to_string().contains("timed out")
        }
    };
    if transient {
        StoreError::Unavailable(describe(&e))
    } else {
        StoreError::Internal(describe(&e))
    }
}

/// The server's message and SQLSTATE (tokio-postgres' Display says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) if e.code().is_none() => StoreError::Unavailable(describe(&e)),
        PoolError::Backend(e) => classify(e),
        PoolError::Timeout(_) | PoolError::Closed => StoreError::Unavailable(e.to_string()),
        other => StoreError::Internal(other.to_string()),
    }
}

fn bad_row(msg: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("unreadable audit_events row: {msg}"))
}

/// Reads a row selected with [`SELECT_COLUMNS`].
fn from_row(row: &Row) -> Result<StoredEvent, StoreError> {
    let outcome: String = row.get(7);
    let data: String = row.get(23);
    let retention: i32 = row.get(21);
    let event = AuditEvent {
        event_id: Some(row.get(0)),
        version: row.get(1),
        event_type: row.get(2),
        event_timestamp: row.get(3),
        event_category: row.get(5),
        event_action: row.get(6),
        event_outcome: EventOutcome::parse(&outcome)
            .ok_or_else(|| bad_row(format!("unknown outcome {outcome:?}")))?,
        actor_type: row.get(8),
        actor_id: row.get(9),
        actor_ip: row.get(10),
        resource_type: row.get(11),
        resource_id: row.get(12),
        correlation_id: row.get(13),
        parent_event_id: row.get(14),
        namespace: row.get(15),
        cluster_id: row.get(16),
        severity: row.get(17),
        duration_ms: row.get(18),
        error_code: row.get(19),
        error_message: row.get(20),
        retention_days: u32::try_from(retention).map_err(bad_row)?,
        is_sensitive: row.get(22),
        // Tampering may leave any JSON here; verification must still see the row.
        event_data: match serde_json::from_str(&data) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(other) => serde_json::Map::from_iter([("_invalid".to_owned(), other)]),
            Err(_) => serde_json::Map::from_iter([("_unparseable".to_owned(), data.into())]),
        },
    };
    Ok(StoredEvent {
        event,
        event_date: row.get::<_, NaiveDate>(4),
        chain_seq: row.get(24),
        previous_event_hash: row.get(25),
        event_hash: row.get(26),
        hash_algorithm: row.get(27),
        legal_hold: row.get(28),
        hash_key_id: row.get(29),
    })
}

fn rows_to_events(rows: &[Row]) -> Result<Vec<StoredEvent>, StoreError> {
    rows.iter().map(from_row).collect()
}

type Param = Box<dyn ToSql + Sync + Send>;

/// The WHERE clause of `q`'s filters (not its cursor) and their parameters.
fn filter_sql(q: &EventQuery) -> (Vec<String>, Vec<Param>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Param> = Vec::new();
    let mut push = |column: &str, op: &str, value: Param| {
        args.push(value);
        clauses.push(format!("{column} {op} ${}", args.len()));
    };
    if let Some(v) = &q.correlation_id {
        push("correlation_id", "=", Box::new(v.clone()));
    }
    if let Some(v) = &q.event_type {
        push("event_type", "=", Box::new(v.clone()));
    }
    if let Some(v) = &q.event_category {
        push("event_category", "=", Box::new(v.clone()));
    }
    if let Some(v) = q.event_outcome {
        push("event_outcome", "=", Box::new(v.as_str()));
    }
    if let Some(v) = &q.severity {
        push("severity", "=", Box::new(v.clone()));
    }
    if let Some(v) = q.since {
        push("event_timestamp", ">=", Box::new(v));
    }
    if let Some(v) = q.until {
        push("event_timestamp", "<=", Box::new(v));
    }
    if let Some(d) = &q.detail {
        // Key and value are both parameters: no caller text reaches the SQL.
        args.push(Box::new(d.key.clone()));
        args.push(Box::new(d.value.clone()));
        // Only string values match (as on SQLite), not a number's spelling.
        let (k, v) = (args.len() - 1, args.len());
        clauses.push(format!(
            "(json_typeof(event_data -> ${k}) = 'string' AND event_data ->> ${k} = ${v})"
        ));
    }
    (clauses, args)
}

fn where_sql(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    }
}

/// How many events match `q`'s filters, all pages together.
fn count_sql(q: &EventQuery) -> (String, Vec<Param>) {
    let (clauses, args) = filter_sql(q);
    let sql = format!("SELECT count(*) FROM audit_events {}", where_sql(&clauses));
    (sql, args)
}

fn query_sql(q: &EventQuery) -> (String, Vec<Param>) {
    let (mut clauses, mut args) = filter_sql(q);
    if let Some(c) = q.cursor {
        let ts = DateTime::<Utc>::from_timestamp_micros(c.timestamp_micros).unwrap_or_default();
        args.push(Box::new(ts));
        args.push(Box::new(c.event_id));
        clauses.push(format!(
            "(event_timestamp, event_id) < (${}, ${})",
            args.len() - 1,
            args.len()
        ));
    }
    let filter = where_sql(&clauses);
    // The page size and offset are parameters too: the statement text depends
    // only on which filters are present (at most 2^9 shapes), so the pool's
    // per-connection statement cache stays bounded whatever callers send.
    args.push(Box::new(q.limit as i64 + 1));
    args.push(Box::new(q.offset as i64));
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM audit_events {filter} \
         ORDER BY event_timestamp DESC, event_id DESC LIMIT ${} OFFSET ${}",
        args.len() - 1,
        args.len()
    );
    (sql, args)
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn insert_batch(&self, events: Vec<AuditEvent>) -> Result<InsertOutcome, StoreError> {
        let mut client = self.client().await?;
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        insert::insert_batch(&mut client, &self.inner.hasher, &events).await
    }

    async fn get(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {} FROM audit_event_ids i JOIN audit_events e \
                 ON e.event_id = i.event_id AND e.event_date = i.event_date \
                 WHERE i.event_id = $1",
                prefixed_columns("e")
            ))
            .await
            .map_err(classify)?;
        let row = client
            .query_opt(&stmt, &[&event_id])
            .await
            .map_err(classify)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.client().await?;
        let (sql, args) = query_sql(query);
        let stmt = client.prepare_cached(&sql).await.map_err(classify)?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&stmt, &params).await.map_err(classify)?;
        rows_to_events(&rows)
    }

    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let (sql, args) = count_sql(query);
        let stmt = client.prepare_cached(&sql).await.map_err(classify)?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let row = client.query_one(&stmt, &params).await.map_err(classify)?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn chain(&self, correlation_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {SELECT_COLUMNS} FROM audit_events WHERE correlation_id = $1 \
                 ORDER BY chain_seq"
            ))
            .await
            .map_err(classify)?;
        let rows = client
            .query(&stmt, &[&correlation_id])
            .await
            .map_err(classify)?;
        rows_to_events(&rows)
    }

    async fn chain_with_head(
        &self,
        correlation_id: &str,
    ) -> Result<(Vec<StoredEvent>, Option<ChainHead>), StoreError> {
        let mut client = self.client().await?;
        // One snapshot for the rows and the head.
        let tx = read_snapshot(&mut client).await?;
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {SELECT_COLUMNS} FROM audit_events WHERE correlation_id = $1 \
                 ORDER BY chain_seq"
            ))
            .await
            .map_err(classify)?;
        let rows = tx
            .query(&stmt, &[&correlation_id])
            .await
            .map_err(classify)?;
        let chain = rows_to_events(&rows)?;
        drop(rows);
        let head = tx
            .query_opt(
                "SELECT chain_seq, event_hash FROM audit_chain_heads WHERE correlation_id = $1",
                &[&correlation_id],
            )
            .await
            .map_err(classify)?
            .map(|r| ChainHead {
                chain_seq: r.get(0),
                event_hash: r.get(1),
            });
        tx.commit().await.map_err(classify)?;
        Ok((chain, head))
    }

    async fn chain_chunks(
        &self,
        correlation_id: &str,
        chunk_size: usize,
    ) -> Result<ChainChunks, StoreError> {
        let mut client = self.client().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let corr = correlation_id.to_owned();
        let chunk_size = chunk_size.max(1) as i64;
        tokio::spawn(async move {
            let read = async {
                // One snapshot for the head and every chunk.
                let db = read_snapshot(&mut client).await?;
                let head = db
                    .query_opt(
                        "SELECT chain_seq, event_hash FROM audit_chain_heads \
                         WHERE correlation_id = $1",
                        &[&corr],
                    )
                    .await
                    .map_err(classify)?
                    .map(|r| ChainHead {
                        chain_seq: r.get(0),
                        event_hash: r.get(1),
                    });
                if tx.send(Ok(ChainPart::Head(head))).await.is_err() {
                    return Ok(());
                }
                let stmt = db
                    .prepare_cached(&format!(
                        "SELECT {SELECT_COLUMNS} FROM audit_events WHERE correlation_id = $1 \
                         AND chain_seq > $2 ORDER BY chain_seq LIMIT $3"
                    ))
                    .await
                    .map_err(classify)?;
                let mut after = i64::MIN;
                loop {
                    let rows = db
                        .query(&stmt, &[&corr, &after, &chunk_size])
                        .await
                        .map_err(classify)?;
                    let chunk = rows_to_events(&rows)?;
                    drop(rows);
                    let Some(last) = chunk.last() else { break };
                    after = last.chain_seq;
                    let full = chunk.len() as i64 == chunk_size;
                    if tx.send(Ok(ChainPart::Events(chunk))).await.is_err() || !full {
                        break;
                    }
                }
                db.commit().await.map_err(classify)
            };
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
        self.export_chunks_impl(query, chunk_size).await
    }

    async fn chain_heads(&self) -> Result<Vec<(String, ChainHead)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT correlation_id, chain_seq, event_hash FROM audit_chain_heads \
                 ORDER BY correlation_id",
                &[],
            )
            .await
            .map_err(classify)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    ChainHead {
                        chain_seq: r.get(1),
                        event_hash: r.get(2),
                    },
                )
            })
            .collect())
    }

    async fn correlation_ids(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT correlation_id FROM audit_chain_heads \
                 UNION SELECT correlation_id FROM audit_events ORDER BY 1",
                &[],
            )
            .await
            .map_err(classify)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn append_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let client = self.client().await?;
        let (summary, heads) = checkpoint_columns(checkpoint);
        client
            .execute(
                "INSERT INTO audit_checkpoints (checkpoint_id, created_at, summary, heads) \
                 VALUES ($1, $2, $3, $4)",
                &[
                    &checkpoint.summary.checkpoint_id,
                    &checkpoint.summary.created_at,
                    &summary,
                    &heads,
                ],
            )
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn checkpoints(&self, limit: usize) -> Result<Vec<CheckpointSummary>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT summary FROM audit_checkpoints \
                 ORDER BY created_at DESC, checkpoint_id DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|r| checkpoint_from_columns(r.get(0), None).map(|(s, _)| s))
            .collect()
    }

    async fn checkpoint(&self, id: Option<Uuid>) -> Result<Option<SignedCheckpoint>, StoreError> {
        let client = self.client().await?;
        let row = match id {
            Some(id) => {
                client
                    .query_opt(
                        "SELECT summary, heads FROM audit_checkpoints WHERE checkpoint_id = $1",
                        &[&id],
                    )
                    .await
            }
            None => {
                client
                    .query_opt(
                        "SELECT summary, heads FROM audit_checkpoints \
                     ORDER BY created_at DESC, checkpoint_id DESC LIMIT 1",
                        &[],
                    )
                    .await
            }
        }
        .map_err(classify)?;
        row.map(|r| {
            checkpoint_from_columns(r.get(0), Some(r.get(1)))
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        // The correlation's lock orders the hold against concurrent batches, so
        // every event is either held by this UPDATE or stored held by its batch.
        tx.execute(LOCK_CORRELATIONS, &[&vec![correlation_id]])
            .await
            .map_err(classify)?;
        let created = tx
            .execute(
                "INSERT INTO legal_holds (correlation_id, reason, placed_by, placed_at) \
                 VALUES ($1, $2, $3, now()) ON CONFLICT (correlation_id) DO NOTHING",
                &[&correlation_id, &reason, &placed_by],
            )
            .await
            .map_err(classify)?
            == 1;
        let held = tx
            .execute(
                "UPDATE audit_events e SET legal_hold = true, legal_hold_reason = h.reason, \
                 legal_hold_placed_by = h.placed_by, legal_hold_placed_at = h.placed_at \
                 FROM legal_holds h WHERE h.correlation_id = $1 \
                 AND e.correlation_id = $1 AND NOT e.legal_hold",
                &[&correlation_id],
            )
            .await
            .map_err(classify)?;
        if created {
            record_action(
                &tx,
                correlation_id,
                LegalHoldActionKind::Placed,
                reason,
                placed_by,
                held,
            )
            .await?;
        }
        let row = tx
            .query_one(
                &format!("{SELECT_HOLDS} WHERE h.correlation_id = $1"),
                &[&correlation_id],
            )
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok((hold_from_row(&row), created))
    }

    async fn release_legal_hold(
        &self,
        correlation_id: &str,
        release_reason: &str,
        released_by: &str,
    ) -> Result<Option<LegalHoldReleased>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        tx.execute(LOCK_CORRELATIONS, &[&vec![correlation_id]])
            .await
            .map_err(classify)?;
        let removed = tx
            .execute(
                "DELETE FROM legal_holds WHERE correlation_id = $1",
                &[&correlation_id],
            )
            .await
            .map_err(classify)?;
        if removed == 0 {
            return Ok(None);
        }
        let released = tx
            .execute(
                "UPDATE audit_events SET legal_hold = false, legal_hold_reason = NULL, \
                 legal_hold_placed_by = NULL, legal_hold_placed_at = NULL \
                 WHERE correlation_id = $1 AND legal_hold",
                &[&correlation_id],
            )
            .await
            .map_err(classify)?;
        record_action(
            &tx,
            correlation_id,
            LegalHoldActionKind::Released,
            release_reason,
            released_by,
            released,
        )
        .await?;
        tx.commit().await.map_err(classify)?;
        Ok(Some(LegalHoldReleased {
            correlation_id: correlation_id.to_owned(),
            release_reason: release_reason.to_owned(),
            released_by: released_by.to_owned(),
            released_at: chrono::Utc::now(),
            events_released: released,
        }))
    }

    async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("{SELECT_HOLDS} ORDER BY h.placed_at, h.correlation_id"),
                &[],
            )
            .await
            .map_err(classify)?;
        Ok(rows.iter().map(hold_from_row).collect())
    }

    async fn legal_hold_history(
        &self,
        correlation_id: &str,
    ) -> Result<Vec<LegalHoldAction>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT action, reason, actor, at, events FROM legal_hold_history \
                 WHERE correlation_id = $1 ORDER BY id",
            )
            .await
            .map_err(classify)?;
        let rows = client
            .query(&stmt, &[&correlation_id])
            .await
            .map_err(classify)?;
        rows.iter().map(action_from_row).collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(classify)?;
        Ok(())
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.maintenance.cancel();
        self.inner.pool.close();
    }
}

/// Active holds with their held-event counts; append a WHERE / ORDER BY.
const SELECT_HOLDS: &str = "SELECT h.correlation_id, h.reason, h.placed_by, h.placed_at, \
    (SELECT count(*) FROM audit_events e WHERE e.correlation_id = h.correlation_id \
     AND e.legal_hold) FROM legal_holds h";

fn hold_from_row(row: &Row) -> LegalHold {
    LegalHold {
        correlation_id: row.get(0),
        reason: row.get(1),
        placed_by: row.get(2),
        placed_at: row.get(3),
        events_affected: row.get::<_, i64>(4).max(0) as u64,
    }
}

/// Appends one entry to the legal-hold journal (inside the hold change's
/// transaction; `at` is the transaction's `now()`, as the hold's `placed_at`).
async fn record_action(
    tx: &deadpool_postgres::Transaction<'_>,
    correlation_id: &str,
    kind: LegalHoldActionKind,
    reason: &str,
    actor: &str,
    events: u64,
) -> Result<(), StoreError> {
    let events = i64::try_from(events).map_err(|e| StoreError::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO legal_hold_history (correlation_id, action, reason, actor, at, events) \
         VALUES ($1, $2, $3, $4, now(), $5)",
        &[
            &correlation_id,
            &action_name(kind),
            &reason,
            &actor,
            &events,
        ],
    )
    .await
    .map_err(classify)?;
    Ok(())
}

fn action_from_row(row: &Row) -> Result<LegalHoldAction, StoreError> {
    let name: String = row.get(0);
    Ok(LegalHoldAction {
        action: action_kind(&name).ok_or_else(|| {
            StoreError::Internal(format!(
                "unreadable legal_hold_history row: unknown action {name:?}"
            ))
        })?,
        reason: row.get(1),
        actor: row.get(2),
        at: row.get(3),
        events: row.get::<_, i64>(4).max(0) as u64,
    })
}
