//! The production backend: PostgreSQL through tokio-postgres and a deadpool pool.
//!
//! `audit_events` is range-partitioned by month on `event_date` (see
//! `0001_init.sql` and [`partitions`]). A batch is one transaction of a fixed
//! number of round trips, whatever its size: the rows travel as arrays and are
//! expanded by `UNNEST` into one `INSERT`. The batch first claims its ids in the
//! unpartitioned `audit_event_ids`, so one `event_id` is stored once whatever
//! its date; a taken id is a replay (same content) or a conflict.
//!
//! Several replicas may write the same correlation at once. Each batch first takes
//! a transaction-scoped advisory lock per correlation id it touches (in ascending
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

use std::collections::{HashMap, HashSet};
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
    action_kind, action_name, checkpoint_columns, checkpoint_from_columns, same_content,
    ChainChunks, ChainPart, EventStore, InsertOutcome, StoreError,
};
use crate::domain::canonical::canonical_json;
use crate::domain::chain::{ChainHasher, ChainHead};
use crate::domain::checkpoint::{CheckpointSummary, SignedCheckpoint};
use crate::domain::query::EventQuery;

mod config;
mod export;
mod migrations;
pub mod partitions;
pub mod roles;

pub use config::{PostgresConfig, PASSWORD_ENV};
pub use migrations::latest_version;

/// Every column a [`StoredEvent`] is read from, in the order [`from_row`] expects.
const SELECT_COLUMNS: &str = "event_id, version, event_type, event_timestamp, event_date, \
    event_category, event_action, event_outcome, actor_type, actor_id, actor_ip, resource_type, \
    resource_id, correlation_id, parent_event_id, namespace, cluster_id, severity, duration_ms, \
    error_code, error_message, retention_days, is_sensitive, event_data::text, chain_seq, \
    previous_event_hash, event_hash, hash_algorithm, legal_hold, hash_key_id";

/// Takes the advisory lock of every correlation id in `$1`, in lock-key order.
const LOCK_CORRELATIONS: &str = "SELECT pg_advisory_xact_lock(k) \
    FROM (SELECT DISTINCT hashtext(c) AS k FROM unnest($1::text[]) AS c) AS keys ORDER BY k";

const SELECT_HEADS: &str = "SELECT correlation_id, chain_seq, event_hash \
    FROM audit_chain_heads WHERE correlation_id = ANY($1)";

/// Claims the ids of a batch (distinct ids in `$1`, their dates in `$2`);
/// answers the ids claimed now, so the others were taken before.
const CLAIM_IDS: &str = "INSERT INTO audit_event_ids (event_id, event_date) \
    SELECT * FROM unnest($1::uuid[], $2::date[]) ON CONFLICT (event_id) DO NOTHING \
    RETURNING event_id";

/// The stored events of the ids in `$1`, located through `audit_event_ids`.
static SELECT_BY_IDS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM audit_event_ids i JOIN audit_events e \
         ON e.event_id = i.event_id AND e.event_date = i.event_date WHERE i.event_id = ANY($1)",
        prefixed_columns("e")
    )
});

/// [`SELECT_COLUMNS`] qualified by a table alias.
fn prefixed_columns(alias: &str) -> String {
    SELECT_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The batch insert: 27 parallel arrays, three scalars; new events of a held
/// correlation are held too.
const INSERT_UNNEST: &str = "INSERT INTO audit_events (event_id, version, event_type, \
    event_timestamp, event_date, event_category, event_action, event_outcome, actor_type, \
    actor_id, actor_ip, resource_type, resource_id, correlation_id, parent_event_id, namespace, \
    cluster_id, severity, duration_ms, error_code, error_message, retention_days, is_sensitive, \
    event_data, chain_seq, previous_event_hash, event_hash, hash_algorithm, stored_at, \
    legal_hold, legal_hold_reason, legal_hold_placed_by, legal_hold_placed_at, hash_key_id) \
    SELECT u.event_id, u.version, u.event_type, u.event_timestamp, u.event_date, \
    u.event_category, u.event_action, u.event_outcome, u.actor_type, u.actor_id, u.actor_ip, \
    u.resource_type, u.resource_id, u.correlation_id, u.parent_event_id, u.namespace, \
    u.cluster_id, u.severity, u.duration_ms, u.error_code, u.error_message, u.retention_days, \
    u.is_sensitive, u.event_data::json, u.chain_seq, u.previous_event_hash, u.event_hash, \
    $28, $29, h.correlation_id IS NOT NULL, h.reason, h.placed_by, h.placed_at, $30 \
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::date[], \
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
    $13::text[], $14::text[], $15::uuid[], $16::text[], $17::text[], $18::text[], \
    $19::int8[], $20::text[], $21::text[], $22::int4[], $23::bool[], $24::text[], \
    $25::int8[], $26::text[], $27::text[]) AS u(event_id, version, event_type, event_timestamp, event_date, \
    event_category, event_action, event_outcome, actor_type, actor_id, actor_ip, resource_type, \
    resource_id, correlation_id, parent_event_id, namespace, cluster_id, severity, duration_ms, \
    error_code, error_message, retention_days, is_sensitive, event_data, chain_seq, \
    previous_event_hash, event_hash) \
    LEFT JOIN legal_holds h ON h.correlation_id = u.correlation_id \
    ON CONFLICT (event_id, event_date) DO NOTHING";

/// Moves chain heads forward: an existing head only from the `chain_seq` this
/// batch read (compare-and-set), a new one only if none exists (primary key).
const ADVANCE_HEADS: &str = "WITH u AS ( \
        SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[]) \
        AS u(correlation_id, old_seq, new_seq, new_hash)), \
    moved AS ( \
        UPDATE audit_chain_heads h SET chain_seq = u.new_seq, event_hash = u.new_hash \
        FROM u WHERE h.correlation_id = u.correlation_id AND u.old_seq > 0 \
        AND h.chain_seq = u.old_seq RETURNING 1), \
    started AS ( \
        INSERT INTO audit_chain_heads (correlation_id, chain_seq, event_hash) \
        SELECT correlation_id, new_seq, new_hash FROM u WHERE old_seq = 0 RETURNING 1) \
    SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM started)";

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

/// The columns of the new events of one batch, as `INSERT_UNNEST` takes them.
#[derive(Default)]
struct Columns<'a> {
    event_id: Vec<Uuid>,
    version: Vec<&'a str>,
    event_type: Vec<&'a str>,
    event_timestamp: Vec<DateTime<Utc>>,
    event_date: Vec<NaiveDate>,
    event_category: Vec<&'a str>,
    event_action: Vec<&'a str>,
    event_outcome: Vec<&'static str>,
    actor_type: Vec<&'a str>,
    actor_id: Vec<&'a str>,
    actor_ip: Vec<Option<&'a str>>,
    resource_type: Vec<&'a str>,
    resource_id: Vec<&'a str>,
    correlation_id: Vec<&'a str>,
    parent_event_id: Vec<Option<Uuid>>,
    namespace: Vec<Option<&'a str>>,
    cluster_id: Vec<Option<&'a str>>,
    severity: Vec<Option<&'a str>>,
    duration_ms: Vec<Option<i64>>,
    error_code: Vec<Option<&'a str>>,
    error_message: Vec<Option<&'a str>>,
    retention_days: Vec<i32>,
    is_sensitive: Vec<bool>,
    event_data: Vec<String>,
    chain_seq: Vec<i64>,
    previous_event_hash: Vec<String>,
    event_hash: Vec<String>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, e: &'a AuditEvent, id: Uuid, seq: i64, previous: String, hash: String) {
        self.event_id.push(id);
        self.version.push(&e.version);
        self.event_type.push(&e.event_type);
        self.event_timestamp.push(e.event_timestamp);
        self.event_date.push(e.event_timestamp.date_naive());
        self.event_category.push(&e.event_category);
        self.event_action.push(&e.event_action);
        self.event_outcome.push(e.event_outcome.as_str());
        self.actor_type.push(&e.actor_type);
        self.actor_id.push(&e.actor_id);
        self.actor_ip.push(e.actor_ip.as_deref());
        self.resource_type.push(&e.resource_type);
        self.resource_id.push(&e.resource_id);
        self.correlation_id.push(&e.correlation_id);
        self.parent_event_id.push(e.parent_event_id);
        self.namespace.push(e.namespace.as_deref());
        self.cluster_id.push(e.cluster_id.as_deref());
        self.severity.push(e.severity.as_deref());
        self.duration_ms.push(e.duration_ms);
        self.error_code.push(e.error_code.as_deref());
        self.error_message.push(e.error_message.as_deref());
        self.retention_days
            .push(i32::try_from(e.retention_days).unwrap_or(i32::MAX));
        self.is_sensitive.push(e.is_sensitive);
        self.event_data
            .push(serde_json::to_string(&e.event_data).expect("JSON maps always serialise"));
        self.chain_seq.push(seq);
        self.previous_event_hash.push(previous);
        self.event_hash.push(hash);
    }

    fn params<'p>(
        &'p self,
        algorithm: &'p &'static str,
        stored_at: &'p DateTime<Utc>,
        key_id: &'p Option<&'p str>,
    ) -> [&'p (dyn ToSql + Sync); 30] {
        [
            &self.event_id,
            &self.version,
            &self.event_type,
            &self.event_timestamp,
            &self.event_date,
            &self.event_category,
            &self.event_action,
            &self.event_outcome,
            &self.actor_type,
            &self.actor_id,
            &self.actor_ip,
            &self.resource_type,
            &self.resource_id,
            &self.correlation_id,
            &self.parent_event_id,
            &self.namespace,
            &self.cluster_id,
            &self.severity,
            &self.duration_ms,
            &self.error_code,
            &self.error_message,
            &self.retention_days,
            &self.is_sensitive,
            &self.event_data,
            &self.chain_seq,
            &self.previous_event_hash,
            &self.event_hash,
            algorithm,
            stored_at,
            key_id,
        ]
    }
}

/// One batch in one transaction; see the module documentation.
///
/// The batch first claims its ids in `audit_event_ids` (unpartitioned, so an id
/// is claimed once whatever the event's date); ids it could not claim are
/// compared with the stored events: the same content is a replay, other
/// content a conflict that rolls the whole batch back.
async fn insert_batch(
    client: &mut deadpool_postgres::Object,
    hasher: &ChainHasher,
    events: &[AuditEvent],
) -> Result<InsertOutcome, StoreError> {
    // Canonical JSON is the CPU part of hashing; compute it before taking the
    // correlation locks, so the time other batches wait for them is only I/O.
    let canonicals: Vec<Vec<u8>> = events.iter().map(canonical_json).collect();
    let tx = client.transaction().await.map_err(classify)?;
    let mut correlations: Vec<&str> = events.iter().map(|e| e.correlation_id.as_str()).collect();
    correlations.sort_unstable();
    correlations.dedup();

    let lock = tx
        .prepare_cached(LOCK_CORRELATIONS)
        .await
        .map_err(classify)?;
    tx.execute(&lock, &[&correlations])
        .await
        .map_err(classify)?;

    let heads_stmt = tx.prepare_cached(SELECT_HEADS).await.map_err(classify)?;
    let mut heads: HashMap<String, (i64, String)> = tx
        .query(&heads_stmt, &[&correlations])
        .await
        .map_err(classify)?
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    // The chain_seq each touched head had when read (0 = no chain yet).
    let read_seqs: HashMap<&str, i64> = correlations
        .iter()
        .map(|c| (*c, heads.get(*c).map_or(0, |h| h.0)))
        .collect();

    let mut outcome = InsertOutcome::default();
    // The first event of the batch with each id; later ones repeat it.
    let mut first_with_id: HashMap<Uuid, usize> = HashMap::with_capacity(events.len());
    let mut ids = Vec::with_capacity(events.len());
    let mut dates = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let id = event.event_id.expect("ingest assigns every event an id");
        match first_with_id.get(&id) {
            None => {
                first_with_id.insert(id, index);
                ids.push(id);
                dates.push(event.event_timestamp.date_naive());
            }
            Some(&first) if canonicals[index] == canonicals[first] => outcome.duplicates += 1,
            Some(_) => outcome.conflicts.push(index),
        }
    }
    let claim = tx.prepare_cached(CLAIM_IDS).await.map_err(classify)?;
    let claimed: HashSet<Uuid> = tx
        .query(&claim, &[&ids, &dates])
        .await
        .map_err(classify)?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    if claimed.len() < ids.len() {
        let taken: Vec<Uuid> = ids
            .iter()
            .filter(|id| !claimed.contains(id))
            .copied()
            .collect();
        let stored_stmt = tx.prepare_cached(&SELECT_BY_IDS).await.map_err(classify)?;
        let stored: HashMap<Uuid, StoredEvent> = tx
            .query(&stored_stmt, &[&taken])
            .await
            .map_err(classify)?
            .iter()
            .map(|r| from_row(r).map(|e| (e.event_id(), e)))
            .collect::<Result<_, _>>()?;
        for id in taken {
            let index = first_with_id[&id];
            match stored.get(&id) {
                // A claimed id whose row is gone (deleted after its retention):
                // nothing to compare with, and storing it again would reuse it.
                None => outcome.duplicates += 1,
                Some(s) if same_content(&events[index], &s.event) => outcome.duplicates += 1,
                Some(_) => outcome.conflicts.push(index),
            }
        }
    }
    if !outcome.conflicts.is_empty() {
        outcome.conflicts.sort_unstable();
        // Dropping the transaction rolls the claims back.
        return Ok(InsertOutcome::conflicting(outcome.conflicts));
    }

    let mut columns = Columns::default();
    for (event, canonical) in events.iter().zip(&canonicals) {
        let id = event.event_id.expect("ingest assigns every event an id");
        if !claimed.contains(&id) || first_with_id.remove(&id).is_none() {
            continue;
        }
        let head = heads
            .entry(event.correlation_id.clone())
            .or_insert_with(|| (0, String::new()));
        let hash = hasher.hash_canonical(&head.1, canonical);
        let seq = head.0 + 1;
        columns.push(
            event,
            id,
            seq,
            std::mem::replace(&mut head.1, hash.clone()),
            hash,
        );
        head.0 = seq;
        outcome.created += 1;
    }
    if outcome.created == 0 {
        tx.commit().await.map_err(classify)?;
        return Ok(outcome);
    }

    let insert = tx.prepare_cached(INSERT_UNNEST).await.map_err(classify)?;
    let algorithm = hasher.algorithm();
    let key_id = hasher.key_id();
    let stored_at = Utc::now();
    let inserted = tx
        .execute(&insert, &columns.params(&algorithm, &stored_at, &key_id))
        .await
        .map_err(classify)?;
    if inserted as usize != outcome.created {
        // Every id was claimed above, so this means someone wrote rows without
        // claiming them; roll back rather than fork a chain.
        return Err(StoreError::Internal(format!(
            "expected to insert {} events, inserted {inserted}; batch rolled back",
            outcome.created
        )));
    }

    let mut head_corr = Vec::new();
    let mut head_old = Vec::new();
    let mut head_new = Vec::new();
    let mut head_hash = Vec::new();
    for (corr, old) in &read_seqs {
        let (seq, hash) = &heads[*corr];
        if *seq != *old {
            head_corr.push(*corr);
            head_old.push(*old);
            head_new.push(*seq);
            head_hash.push(hash.as_str());
        }
    }
    let advance = tx.prepare_cached(ADVANCE_HEADS).await.map_err(classify)?;
    let moved: i64 = tx
        .query_one(&advance, &[&head_corr, &head_old, &head_new, &head_hash])
        .await
        .map_err(classify)?
        .get(0);
    if moved as usize != head_corr.len() {
        return Err(StoreError::Internal(
            "a chain head moved under this batch; batch rolled back".into(),
        ));
    }
    tx.commit().await.map_err(classify)?;
    Ok(outcome)
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
        insert_batch(&mut client, &self.inner.hasher, &events).await
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
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(classify)?;
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
                let db = client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await
                    .map_err(classify)?;
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
