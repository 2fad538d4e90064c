//! Persistence behind one trait, so the API and the domain never see SQL.
//!
//! Every backend must pass the same conformance tests (`tests/store_conformance.rs`):
//! idempotent inserts on `event_id`, one linear hash chain per correlation id,
//! newest-first keyset queries.

use async_trait::async_trait;
use audit_sdk::api::{LegalHold, LegalHoldAction, LegalHoldActionKind, LegalHoldReleased};
use audit_sdk::{AuditEvent, StoredEvent};
use uuid::Uuid;

use crate::domain::chain::ChainHead;
use crate::domain::checkpoint::{CheckpointSummary, SignedCheckpoint};
use crate::domain::query::EventQuery;

pub mod postgres;
pub mod sqlite;

/// What an insert did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    /// Events stored by this call.
    pub created: usize,
    /// Events whose `event_id` was already stored (or repeated within the batch)
    /// with the same content: idempotent replays.
    pub duplicates: usize,
    /// Indexes (in the batch) of events whose `event_id` is already stored (or
    /// used earlier in the batch) with *different* content. When not empty,
    /// nothing of the batch was stored.
    pub conflicts: Vec<usize>,
}

impl InsertOutcome {
    /// The answer for a batch refused because of id conflicts.
    fn conflicting(conflicts: Vec<usize>) -> Self {
        Self {
            conflicts,
            ..Self::default()
        }
    }
}

/// Whether a resent event is a replay of the stored one (same canonical bytes,
/// the ones its hash covers) rather than a different event reusing its id.
fn same_content(sent: &AuditEvent, stored: &AuditEvent) -> bool {
    crate::domain::canonical::canonical_json(sent)
        == crate::domain::canonical::canonical_json(stored)
}

/// One piece of a chain read in chunks by [`EventStore::chain_chunks`]: the
/// head first, then the rows in `chain_seq` order, all of one snapshot.
#[derive(Debug)]
pub enum ChainPart {
    /// The chain's head kept apart from the rows (always the first part).
    Head(Option<ChainHead>),
    /// The next rows (never more than the chunk size asked for).
    Events(Vec<StoredEvent>),
}

/// The receiving end of [`EventStore::chain_chunks`]. It holds at most one
/// chunk ahead of the reader, so a chain of any length costs two chunks of memory.
pub type ChainChunks = tokio::sync::mpsc::Receiver<Result<ChainPart, StoreError>>;

/// One piece of an export read in chunks by [`EventStore::export_chunks`].
#[derive(Debug, Default)]
pub struct ExportChunk {
    /// The head (kept apart from the rows, same snapshot) of each correlation
    /// whose first exported event is in this chunk.
    pub heads: Vec<(String, Option<ChainHead>)>,
    /// The next events in `(correlation_id, chain_seq)` order.
    pub events: Vec<StoredEvent>,
}

/// The receiving end of [`EventStore::export_chunks`] (one chunk ahead of the reader).
pub type ExportChunks = tokio::sync::mpsc::Receiver<Result<ExportChunk, StoreError>>;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy; the caller should retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a corrupted database.
    #[error("store failure: {0}")]
    Internal(String),
}

/// An audit event store.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a batch atomically: either every new event is stored and chained, or
    /// none is. Events whose id is already stored with the same content are
    /// skipped and counted; one `event_id` is stored once whatever its timestamp.
    /// An id stored (or repeated in the batch) with other content is a conflict:
    /// nothing is stored and [`InsertOutcome::conflicts`] names the indexes.
    /// Every event must carry an `event_id`.
    async fn insert_batch(&self, events: Vec<AuditEvent>) -> Result<InsertOutcome, StoreError>;

    /// One event by id.
    async fn get(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError>;

    /// Events matching `query`, newest first, at most `query.limit + 1` of them
    /// (the extra one tells the caller there is another page).
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// How many events match `query`'s filters, all pages together (its
    /// `cursor`, `offset` and `limit` are ignored).
    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError>;

    /// The whole chain of `correlation_id` in `chain_seq` order.
    async fn chain(&self, correlation_id: &str) -> Result<Vec<StoredEvent>, StoreError>;

    /// [`EventStore::chain`] and, read in the same snapshot, the head of the
    /// chain as the inserts left it (kept apart from the rows, so deleting rows
    /// does not move it; `None` when no event of it was ever stored).
    async fn chain_with_head(
        &self,
        correlation_id: &str,
    ) -> Result<(Vec<StoredEvent>, Option<ChainHead>), StoreError>;

    /// [`EventStore::chain_with_head`] read in chunks of at most `chunk_size`
    /// rows (keyset on `chain_seq`, one read snapshot), so verifying a long
    /// chain never holds the whole chain in memory.
    async fn chain_chunks(
        &self,
        correlation_id: &str,
        chunk_size: usize,
    ) -> Result<ChainChunks, StoreError>;

    /// Events matching `query`'s filters in `(correlation_id, chain_seq)`
    /// order, skipping `query.offset` and at most `query.limit` of them (its
    /// cursor is ignored), read in chunks of at most `chunk_size` rows of one
    /// snapshot (keyset on `(correlation_id, chain_seq)`), so an export of any
    /// size costs two chunks of memory.
    async fn export_chunks(
        &self,
        query: &EventQuery,
        chunk_size: usize,
    ) -> Result<ExportChunks, StoreError>;

    /// Every chain head, sorted by correlation id, of one snapshot (what a
    /// checkpoint signs).
    async fn chain_heads(&self) -> Result<Vec<(String, ChainHead)>, StoreError>;

    /// Every correlation id with a head or with rows, sorted (rows written
    /// around the store have no head).
    async fn correlation_ids(&self) -> Result<Vec<String>, StoreError>;

    /// Appends a checkpoint (checkpoints are never changed or deleted).
    async fn append_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError>;

    /// The newest `limit` checkpoints, newest first, without their heads.
    async fn checkpoints(&self, limit: usize) -> Result<Vec<CheckpointSummary>, StoreError>;

    /// One checkpoint with its heads (`None` id: the newest); `None` when absent.
    async fn checkpoint(&self, id: Option<Uuid>) -> Result<Option<SignedCheckpoint>, StoreError>;

    /// Places a legal hold on `correlation_id`: its events, including those stored
    /// later, cannot be deleted until the hold is released. Placing a hold that is
    /// already active changes nothing and answers the existing hold with `false`.
    async fn place_legal_hold(
        &self,
        correlation_id: &str,
        reason: &str,
        placed_by: &str,
    ) -> Result<(LegalHold, bool), StoreError>;

    /// Releases the hold on `correlation_id`; `None` when there was none.
    async fn release_legal_hold(
        &self,
        correlation_id: &str,
        release_reason: &str,
        released_by: &str,
    ) -> Result<Option<LegalHoldReleased>, StoreError>;

    /// Every active legal hold, oldest first.
    async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError>;

    /// The legal-hold journal of `correlation_id`, oldest first: one entry per
    /// placement that created a hold and per release, written in the same
    /// transaction as the hold change. Empty when it was never held.
    async fn legal_hold_history(
        &self,
        correlation_id: &str,
    ) -> Result<Vec<LegalHoldAction>, StoreError>;

    /// Cheap liveness check of the database, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes and closes; called once at shutdown after requests have drained.
    async fn close(&self);
}

/// The `action` column's text of a journal entry.
fn action_name(kind: LegalHoldActionKind) -> &'static str {
    match kind {
        LegalHoldActionKind::Placed => "placed",
        LegalHoldActionKind::Released => "released",
    }
}

/// Reads the `action` column of a journal entry.
fn action_kind(name: &str) -> Option<LegalHoldActionKind> {
    match name {
        "placed" => Some(LegalHoldActionKind::Placed),
        "released" => Some(LegalHoldActionKind::Released),
        _ => None,
    }
}

/// The stored text of a checkpoint: its summary and its heads as JSON.
fn checkpoint_columns(checkpoint: &SignedCheckpoint) -> (String, String) {
    (
        serde_json::to_string(&checkpoint.summary).expect("summaries always serialise"),
        serde_json::to_string(&checkpoint.heads).expect("heads always serialise"),
    )
}

/// Reads a stored checkpoint summary (and heads, when read).
fn checkpoint_from_columns(
    summary: &str,
    heads: Option<&str>,
) -> Result<
    (
        CheckpointSummary,
        Vec<crate::domain::checkpoint::CheckpointHead>,
    ),
    StoreError,
> {
    let bad = |e: serde_json::Error| StoreError::Internal(format!("unreadable checkpoint: {e}"));
    let summary = serde_json::from_str(summary).map_err(bad)?;
    let heads = match heads {
        Some(h) => serde_json::from_str(h).map_err(bad)?,
        None => Vec::new(),
    };
    Ok((summary, heads))
}
