//! One batch of events into PostgreSQL: one transaction, a fixed number of round
//! trips whatever its size (the rows travel as arrays expanded by `UNNEST`).
//!
//! A batch holds the advisory locks of the correlations it writes from the
//! moment it reads their chain heads until it commits, and every other batch
//! writing one of those correlations waits that long; across replicas those
//! locks are what keeps each chain linear. So the batch does everything that
//! does not need the heads before it takes them:
//!
//! 1. canonical JSON (the hash input) and the `event_data` text of every event
//!    (CPU, outside the transaction);
//! 2. claiming the ids in the unpartitioned `audit_event_ids` (sorted, so two
//!    batches sharing ids claim them in one order and cannot deadlock), so one
//!    `event_id` is stored once whatever its date; a taken id is compared with
//!    the stored event: the same content is a replay, other content a conflict
//!    that rolls the whole batch back;
//!
//! and only then, under the locks: read the heads, hash, insert the rows and
//! move each head forward with a compare-and-set on `audit_chain_heads`. The
//! lock and the heads' read travel together (pipelined on the connection), as
//! do the insert and the heads' advance, so the locks are held for two round
//! trips plus the hashing.
//!
//! Deadlock freedom: id claims come before any correlation lock in every
//! transaction, and a transaction holding correlation locks never waits for an
//! id claim (its own ids are claimed already), so waits only ever point from
//! claims to locks, and locks are taken in lock-key order.

use std::collections::{HashMap, HashSet};

use audit_sdk::{AuditEvent, StoredEvent};
use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{classify, from_row, prefixed_columns, LOCK_CORRELATIONS};
use crate::domain::canonical::canonical_json;
use crate::domain::chain::ChainHasher;
use crate::store::{same_content, InsertOutcome, StoreError};

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
    /// The event's own fields (everything but its link in the chain).
    fn push_event(&mut self, e: &'a AuditEvent, id: Uuid) {
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
    }

    /// The chain link of the next event pushed by [`Columns::push_event`].
    fn push_link(&mut self, seq: i64, previous: String, hash: String) {
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

/// Stores `events` (not empty) in one transaction; see the module documentation.
pub(super) async fn insert_batch(
    client: &mut deadpool_postgres::Object,
    hasher: &ChainHasher,
    events: &[AuditEvent],
) -> Result<InsertOutcome, StoreError> {
    let canonicals: Vec<Vec<u8>> = events.iter().map(canonical_json).collect();
    let mut outcome = InsertOutcome::default();

    // The first event of the batch with each id; later ones repeat it.
    let mut first_with_id: HashMap<Uuid, usize> = HashMap::with_capacity(events.len());
    let mut claims: Vec<(Uuid, NaiveDate)> = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let id = event.event_id.expect("ingest assigns every event an id");
        match first_with_id.get(&id) {
            None => {
                first_with_id.insert(id, index);
                claims.push((id, event.event_timestamp.date_naive()));
            }
            Some(&first) if canonicals[index] == canonicals[first] => outcome.duplicates += 1,
            Some(_) => outcome.conflicts.push(index),
        }
    }
    claims.sort_unstable_by_key(|(id, _)| *id);
    let (ids, dates): (Vec<Uuid>, Vec<NaiveDate>) = claims.into_iter().unzip();

    let tx = client.transaction().await.map_err(classify)?;
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

    // The events stored now, in batch order: each claimed id's first event.
    let new: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(index, e)| {
            let id = e.event_id.expect("ingest assigns every event an id");
            claimed.contains(&id) && first_with_id[&id] == *index
        })
        .map(|(index, _)| index)
        .collect();
    if new.is_empty() {
        tx.commit().await.map_err(classify)?;
        return Ok(outcome);
    }
    let mut columns = Columns::default();
    let mut correlations: Vec<&str> = Vec::with_capacity(new.len());
    for &index in &new {
        let event = &events[index];
        columns.push_event(event, event.event_id.expect("checked above"));
        correlations.push(&event.correlation_id);
    }
    correlations.sort_unstable();
    correlations.dedup();
    let lock = tx
        .prepare_cached(LOCK_CORRELATIONS)
        .await
        .map_err(classify)?;
    let heads_stmt = tx.prepare_cached(SELECT_HEADS).await.map_err(classify)?;
    let insert = tx.prepare_cached(INSERT_UNNEST).await.map_err(classify)?;
    let advance = tx.prepare_cached(ADVANCE_HEADS).await.map_err(classify)?;

    // From here until the commit, the batch holds its correlations' locks. The
    // heads are read by the statement after the lock, so with its snapshot.
    let lock_params: [&(dyn ToSql + Sync); 1] = [&correlations];
    let (_, head_rows) = tokio::try_join!(
        tx.execute(&lock, &lock_params),
        tx.query(&heads_stmt, &lock_params),
    )
    .map_err(classify)?;
    let mut heads: HashMap<&str, (i64, String)> = HashMap::with_capacity(correlations.len());
    // The chain_seq each touched head had when read (0 = no chain yet).
    let mut read_seqs: HashMap<&str, i64> = HashMap::with_capacity(correlations.len());
    for row in &head_rows {
        let corr: &str = row.get(0);
        let Ok(at) = correlations.binary_search(&corr) else {
            continue;
        };
        let corr = correlations[at];
        let seq: i64 = row.get(1);
        heads.insert(corr, (seq, row.get(2)));
        read_seqs.insert(corr, seq);
    }
    for corr in &correlations {
        read_seqs.entry(corr).or_insert(0);
    }

    for &index in &new {
        let event = &events[index];
        let head = heads
            .entry(event.correlation_id.as_str())
            .or_insert_with(|| (0, String::new()));
        let hash = hasher.hash_canonical(&head.1, &canonicals[index]);
        head.0 += 1;
        let previous = std::mem::replace(&mut head.1, hash.clone());
        columns.push_link(head.0, previous, hash);
    }
    outcome.created = new.len();

    let mut head_corr = Vec::with_capacity(correlations.len());
    let mut head_old = Vec::with_capacity(correlations.len());
    let mut head_new = Vec::with_capacity(correlations.len());
    let mut head_hash = Vec::with_capacity(correlations.len());
    for corr in &correlations {
        let (seq, hash) = &heads[corr];
        head_corr.push(*corr);
        head_old.push(read_seqs[corr]);
        head_new.push(*seq);
        head_hash.push(hash.as_str());
    }
    let algorithm = hasher.algorithm();
    let key_id = hasher.key_id();
    let stored_at = Utc::now();
    let insert_params = columns.params(&algorithm, &stored_at, &key_id);
    let advance_params: [&(dyn ToSql + Sync); 4] = [&head_corr, &head_old, &head_new, &head_hash];
    let (inserted, moved) = tokio::try_join!(
        tx.execute(&insert, &insert_params),
        tx.query_one(&advance, &advance_params),
    )
    .map_err(classify)?;
    if inserted as usize != outcome.created {
        // Every id was claimed above, so this means someone wrote rows without
        // claiming them; roll back rather than fork a chain.
        return Err(StoreError::Internal(format!(
            "expected to insert {} events, inserted {inserted}; batch rolled back",
            outcome.created
        )));
    }
    if moved.get::<_, i64>(0) as usize != head_corr.len() {
        return Err(StoreError::Internal(
            "a chain head moved under this batch; batch rolled back".into(),
        ));
    }
    tx.commit().await.map_err(classify)?;
    Ok(outcome)
}
