//! Persistence behind one trait, so the API and the domain never see SQL.
//!
//! Every backend must pass the same conformance tests (`tests/store_conformance.rs`):
//! idempotent inserts on `event_id`, one linear hash chain per correlation id,
//! newest-first keyset queries.

use async_trait::async_trait;
use audit_sdk::{AuditEvent, StoredEvent};
use uuid::Uuid;

use crate::domain::query::EventQuery;

pub mod sqlite;

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    /// Events stored by this call.
    pub created: usize,
    /// Events whose `event_id` was already stored (or repeated within the batch).
    pub duplicates: usize,
}

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
    /// none is. Events whose id is already stored are skipped and counted.
    /// Every event must carry an `event_id`.
    async fn insert_batch(&self, events: Vec<AuditEvent>) -> Result<InsertOutcome, StoreError>;

    /// One event by id.
    async fn get(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError>;

    /// Events matching `query`, newest first, at most `query.limit + 1` of them
    /// (the extra one tells the caller there is another page).
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// The whole chain of `correlation_id` in `chain_seq` order.
    async fn chain(&self, correlation_id: &str) -> Result<Vec<StoredEvent>, StoreError>;

    /// Cheap liveness check of the database, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes and closes; called once at shutdown after requests have drained.
    async fn close(&self);
}
