//! One batch of events into PostgreSQL: one transaction, a fixed number of round
//! trips whatever its size (the ids travel as arrays, the rows as one binary
//! `COPY`).
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
//!    `event_id` is stored once whatever its date: all at once by a binary
//!    COPY, or, when one was taken before (the COPY fails, the transaction
//!    starts over), by an `INSERT … ON CONFLICT DO NOTHING` that answers which;
//!    a taken id is compared with the stored event: the same content is a
//!    replay, other content a conflict that rolls the whole batch back;
//!
//! and only then, under the locks: read the heads and the correlations' legal
//! holds, hash, move each head forward with a compare-and-set on
//! `audit_chain_heads`, and write the rows with one binary `COPY` (about twice
//! as fast as an `INSERT … SELECT FROM unnest(…)` of the same rows, which
//! plans and decodes 27 arrays and checks `ON CONFLICT` row by row). The lock
//! and the two reads travel together (pipelined on the connection), so the
//! locks are held for three round trips, the hashing and the copy.
//!
//! Deadlock freedom: id claims come before any correlation lock in every
//! transaction, and a transaction holding correlation locks never waits for an
//! id claim (its own ids are claimed already), so waits only ever point from
//! claims to locks, and locks are taken in lock-key order.

use std::collections::{HashMap, HashSet};

use audit_sdk::{AuditEvent, StoredEvent};
use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use uuid::Uuid;

use super::{classify, from_row, prefixed_columns, LOCK_CORRELATIONS};
use crate::domain::canonical::canonical_json;
use crate::domain::chain::ChainHasher;
use crate::store::{same_content, InsertOutcome, StoreError};

const SELECT_HEADS: &str = "SELECT correlation_id, chain_seq, event_hash \
    FROM audit_chain_heads WHERE correlation_id = ANY($1)";

/// Claims every id of a batch at once: the common case, where none was
/// stored before. A binary COPY is PostgreSQL's cheapest insert (one index
/// descent per id, no speculative insertion, nothing sent back); a taken id
/// fails it with a unique violation, and the batch starts over with
/// [`CLAIM_IDS`], which tells the taken ids apart. Only a replay (an SDK
/// resending after a lost answer) or a conflict pays that second try.
const COPY_CLAIMS: &str = "COPY audit_event_ids (event_id, event_date) FROM STDIN (FORMAT binary)";

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

/// The active legal holds of the correlations in `$1`: new events of a held
/// correlation are held too. Read under the batch's correlation locks, which a
/// hold's placement and release take as well, so no hold changes until commit.
const SELECT_HOLDS: &str = "SELECT correlation_id, reason, placed_by, placed_at \
    FROM legal_holds WHERE correlation_id = ANY($1)";

/// The columns a batch writes, in [`COPY_TYPES`]' order: the event and its
/// chain link first (the first [`EVENT_AND_LINK_COLUMNS`], what the
/// PostgreSQL bench's baseline COPY writes too), then the legal hold copied
/// from its correlation and the id of the chain key.
pub const COPY_COLUMNS: [&str; 34] = [
    "event_id",
    "version",
    "event_type",
    "event_timestamp",
    "event_date",
    "event_category",
    "event_action",
    "event_outcome",
    "actor_type",
    "actor_id",
    "actor_ip",
    "resource_type",
    "resource_id",
    "correlation_id",
    "parent_event_id",
    "namespace",
    "cluster_id",
    "severity",
    "duration_ms",
    "error_code",
    "error_message",
    "retention_days",
    "is_sensitive",
    "event_data",
    "chain_seq",
    "previous_event_hash",
    "event_hash",
    "hash_algorithm",
    "stored_at",
    "legal_hold",
    "legal_hold_reason",
    "legal_hold_placed_by",
    "legal_hold_placed_at",
    "hash_key_id",
];

/// How many of [`COPY_COLUMNS`] are the event and its chain link.
pub const EVENT_AND_LINK_COLUMNS: usize = 29;

/// The batch's new rows, as a binary COPY: PostgreSQL's cheapest way in (no
/// per-row plan, no array decoding). No `ON CONFLICT` is needed: every id was
/// claimed in `audit_event_ids` first, so a unique violation here would mean a
/// row written without its claim, and it fails the batch loudly.
static COPY_IN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "COPY audit_events ({}) FROM STDIN (FORMAT binary)",
        COPY_COLUMNS.join(", ")
    )
});

/// The column types of [`COPY_COLUMNS`], in its order.
pub const COPY_TYPES: [Type; 34] = [
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::DATE,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::BOOL,
    Type::JSON,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
];

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

/// `event_data` text serialised before the locks are taken, sent as the `json`
/// value it is (the `json` type's binary form is its text).
#[derive(Debug)]
struct RawJson<'a>(&'a str);

impl ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    to_sql_checked!();
}

/// A legal hold as copied onto the events it holds.
struct Hold {
    reason: String,
    placed_by: String,
    placed_at: DateTime<Utc>,
}

/// The chain link of one new event.
struct Link {
    seq: i64,
    previous: String,
    hash: String,
}

/// Claims `ids` (with their `dates`) by one binary COPY; fails with a unique
/// violation when one was taken ([`COPY_CLAIMS`]).
async fn copy_claims(
    tx: &deadpool_postgres::Transaction<'_>,
    ids: &[Uuid],
    dates: &[NaiveDate],
) -> Result<(), tokio_postgres::Error> {
    let statement = tx.prepare_cached(COPY_CLAIMS).await?;
    let sink = tx.copy_in(&statement).await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::UUID, Type::DATE]);
    let mut writer = std::pin::pin!(writer);
    for (id, date) in ids.iter().zip(dates) {
        writer.as_mut().write(&[id, date]).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Writes the new events, each with its link and its correlation's hold, as
/// one binary COPY; answers the rows written.
async fn copy_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: impl Iterator<Item = (&AuditEvent, (&String, Link))>,
    holds: &HashMap<String, Hold>,
    hasher: &ChainHasher,
) -> Result<u64, StoreError> {
    let statement = tx.prepare_cached(&COPY_IN).await.map_err(classify)?;
    let sink = tx.copy_in(&statement).await.map_err(classify)?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    let mut writer = std::pin::pin!(writer);
    let algorithm = hasher.algorithm();
    let key_id = hasher.key_id();
    let stored_at = Utc::now();
    for (e, (data, link)) in rows {
        let id = e.event_id.expect("ingest assigns every event an id");
        let date = e.event_timestamp.date_naive();
        let retention = i32::try_from(e.retention_days).unwrap_or(i32::MAX);
        let hold = holds.get(&e.correlation_id);
        let held = hold.is_some();
        let values: [&(dyn ToSql + Sync); 34] = [
            &id,
            &e.version,
            &e.event_type,
            &e.event_timestamp,
            &date,
            &e.event_category,
            &e.event_action,
            &e.event_outcome.as_str(),
            &e.actor_type,
            &e.actor_id,
            &e.actor_ip,
            &e.resource_type,
            &e.resource_id,
            &e.correlation_id,
            &e.parent_event_id,
            &e.namespace,
            &e.cluster_id,
            &e.severity,
            &e.duration_ms,
            &e.error_code,
            &e.error_message,
            &retention,
            &e.is_sensitive,
            &RawJson(data),
            &link.seq,
            &link.previous,
            &link.hash,
            &algorithm,
            &stored_at,
            &held,
            &hold.map(|h| h.reason.as_str()),
            &hold.map(|h| h.placed_by.as_str()),
            &hold.map(|h| h.placed_at),
            &key_id,
        ];
        writer.as_mut().write(&values).await.map_err(classify)?;
    }
    writer.finish().await.map_err(classify)
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

    let mut tx = client.transaction().await.map_err(classify)?;
    // The ids stored before this batch (sorted, as `ids` is): none when the
    // COPY took them all.
    let taken: Vec<Uuid> = match copy_claims(&tx, &ids, &dates).await {
        Ok(()) => Vec::new(),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            // Some id was taken before: the failed COPY aborted the
            // transaction, which holds nothing else yet; start over.
            tx.rollback().await.map_err(classify)?;
            tx = client.transaction().await.map_err(classify)?;
            let claim = tx.prepare_cached(CLAIM_IDS).await.map_err(classify)?;
            let claimed: HashSet<Uuid> = tx
                .query(&claim, &[&ids, &dates])
                .await
                .map_err(classify)?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            ids.iter()
                .filter(|id| !claimed.contains(id))
                .copied()
                .collect()
        }
        Err(e) => return Err(classify(e)),
    };
    if !taken.is_empty() {
        let stored_stmt = tx.prepare_cached(&SELECT_BY_IDS).await.map_err(classify)?;
        let stored: HashMap<Uuid, StoredEvent> = tx
            .query(&stored_stmt, &[&taken])
            .await
            .map_err(classify)?
            .iter()
            .map(|r| from_row(r).map(|e| (e.event_id(), e)))
            .collect::<Result<_, _>>()?;
        for id in &taken {
            let index = first_with_id[id];
            match stored.get(id) {
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
            taken.binary_search(&id).is_err() && first_with_id[&id] == *index
        })
        .map(|(index, _)| index)
        .collect();
    if new.is_empty() {
        tx.commit().await.map_err(classify)?;
        return Ok(outcome);
    }
    let data: Vec<String> = new
        .iter()
        .map(|&index| {
            serde_json::to_string(&events[index].event_data).expect("JSON maps always serialise")
        })
        .collect();
    let mut correlations: Vec<&str> = new
        .iter()
        .map(|&index| events[index].correlation_id.as_str())
        .collect();
    correlations.sort_unstable();
    correlations.dedup();
    let lock = tx
        .prepare_cached(LOCK_CORRELATIONS)
        .await
        .map_err(classify)?;
    let heads_stmt = tx.prepare_cached(SELECT_HEADS).await.map_err(classify)?;
    let holds_stmt = tx.prepare_cached(SELECT_HOLDS).await.map_err(classify)?;
    let advance = tx.prepare_cached(ADVANCE_HEADS).await.map_err(classify)?;

    // From here until the commit, the batch holds its correlations' locks. The
    // heads and holds are read by the statements after the lock, so with its
    // snapshot.
    let lock_params: [&(dyn ToSql + Sync); 1] = [&correlations];
    let (_, head_rows, hold_rows) = tokio::try_join!(
        tx.execute(&lock, &lock_params),
        tx.query(&heads_stmt, &lock_params),
        tx.query(&holds_stmt, &lock_params),
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
    let holds: HashMap<String, Hold> = hold_rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Hold {
                    reason: r.get(1),
                    placed_by: r.get(2),
                    placed_at: r.get(3),
                },
            )
        })
        .collect();

    let mut links = Vec::with_capacity(new.len());
    for &index in &new {
        let event = &events[index];
        let head = heads
            .entry(event.correlation_id.as_str())
            .or_insert_with(|| (0, String::new()));
        let hash = hasher.hash_canonical(&head.1, &canonicals[index]);
        head.0 += 1;
        let previous = std::mem::replace(&mut head.1, hash.clone());
        links.push(Link {
            seq: head.0,
            previous,
            hash,
        });
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
    // The heads first: a head that moved under the batch (which the locks
    // rule out) stops it before its rows are sent.
    let advance_params: [&(dyn ToSql + Sync); 4] = [&head_corr, &head_old, &head_new, &head_hash];
    let moved = tx
        .query_one(&advance, &advance_params)
        .await
        .map_err(classify)?;
    if moved.get::<_, i64>(0) as usize != head_corr.len() {
        return Err(StoreError::Internal(
            "a chain head moved under this batch; batch rolled back".into(),
        ));
    }
    let rows = new
        .iter()
        .map(|&index| &events[index])
        .zip(data.iter().zip(links));
    let inserted = copy_rows(&tx, rows, &holds, hasher).await?;
    if inserted as usize != outcome.created {
        return Err(StoreError::Internal(format!(
            "expected to insert {} events, inserted {inserted}; batch rolled back",
            outcome.created
        )));
    }
    tx.commit().await.map_err(classify)?;
    Ok(outcome)
}
