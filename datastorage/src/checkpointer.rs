//! Takes signed checkpoints in the background: every
//! `chain.checkpoint_interval`, and as soon as `chain.checkpoint_every_events`
//! events were stored since the last one — or as many events as the last one
//! covered chains, if that is more. A checkpoint reads, signs and stores every
//! chain head, so its cost grows with the number of chains, not with the
//! events since the last one: on a fixed count, a store with 60,000 chains
//! spent a quarter of its ingest throughput on checkpoints (the PostgreSQL
//! bench). Spacing them by at least one event per head they carry keeps that
//! cost per stored event bounded whatever the number of chains.
//!
//! Counting needs no change to the ingest path: [`CountingStore`] wraps the
//! store and counts what its inserts created. A checkpoint whose heads equal
//! the newest one's is not written, so an idle store does not grow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use audit_sdk::api::{LegalHold, LegalHoldAction, LegalHoldReleased};
use audit_sdk::{AuditEvent, StoredEvent};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::chain::ChainHead;
use crate::domain::checkpoint::{CheckpointKeys, CheckpointSummary, SignedCheckpoint};
use crate::domain::query::EventQuery;
use crate::store::{ChainChunks, EventStore, ExportChunks, InsertOutcome, StoreError};

/// Takes a checkpoint of every chain head now, unless nothing changed since
/// the newest one; answers the checkpoint written, if any.
pub async fn take(
    store: &dyn EventStore,
    keys: &CheckpointKeys,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let heads = store.chain_heads().await?;
    let checkpoint = keys.sign(heads);
    let latest = store.checkpoints(1).await?;
    if latest
        .first()
        .is_some_and(|l| l.heads_digest == checkpoint.summary.heads_digest)
    {
        return Ok(None);
    }
    store.append_checkpoint(&checkpoint).await?;
    tracing::info!(
        checkpoint_id = %checkpoint.summary.checkpoint_id,
        chains = checkpoint.summary.head_count,
        events = checkpoint.summary.event_count,
        algorithm = %checkpoint.summary.algorithm,
        "signed checkpoint taken"
    );
    Ok(Some(checkpoint))
}

/// Events stored since the last checkpoint, and a wake-up when it is time.
#[derive(Debug, Default)]
pub struct EventCounter {
    stored: AtomicU64,
    threshold: u64,
    /// Chains the newest checkpoint covers: the next one is due after at
    /// least as many events.
    covered: AtomicU64,
    wake: Notify,
}

impl EventCounter {
    /// A counter that wakes the checkpointer every `threshold` events (0 = never).
    pub fn new(threshold: u64) -> Self {
        Self {
            threshold,
            ..Self::default()
        }
    }

    /// Events after which the next checkpoint is due.
    fn due_after(&self) -> u64 {
        self.threshold.max(self.covered.load(Ordering::Acquire))
    }

    fn add(&self, created: usize) {
        let before = self.stored.fetch_add(created as u64, Ordering::AcqRel);
        if self.threshold > 0 && before + created as u64 >= self.due_after() {
            self.wake.notify_one();
        }
    }

    /// A checkpoint is being taken: events from now on count towards the next.
    fn start_over(&self) {
        self.stored.store(0, Ordering::Release);
    }

    /// The newest checkpoint covers `chains` chains.
    fn covers(&self, chains: usize) {
        self.covered.store(chains as u64, Ordering::Release);
    }
}

/// Runs until `stop`: a checkpoint every `interval` (zero: never by time) and
/// whenever the counter reaches its threshold. Failures are logged and retried
/// at the next occasion; they never stop ingest.
pub async fn run(
    store: Arc<dyn EventStore>,
    keys: CheckpointKeys,
    counter: Arc<EventCounter>,
    interval: Duration,
    stop: CancellationToken,
) {
    // A long sleep stands for "never" when the interval is zero.
    let period = if interval.is_zero() {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        interval
    };
    // A restarted server spaces its first checkpoint by the newest one's size.
    match store.checkpoints(1).await {
        Ok(newest) => {
            if let Some(newest) = newest.first() {
                counter.covers(newest.head_count);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the newest checkpoint"),
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
            _ = counter.wake.notified() => {}
        }
        counter.start_over();
        match take(store.as_ref(), &keys).await {
            Ok(Some(taken)) => counter.covers(taken.summary.head_count),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "taking a signed checkpoint failed; retrying at the next occasion")
            }
        }
    }
}

/// The store, counting the events its inserts create for the checkpointer.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn EventStore>,
    counter: Arc<EventCounter>,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn EventStore>, counter: Arc<EventCounter>) -> Self {
        Self { inner, counter }
    }
}

#[async_trait]
impl EventStore for CountingStore {
    async fn insert_batch(&self, events: Vec<AuditEvent>) -> Result<InsertOutcome, StoreError> {
        let outcome = self.inner.insert_batch(events).await?;
        self.counter.add(outcome.created);
        Ok(outcome)
    }
    async fn get(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.get(event_id).await
    }
    async fn query(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.query(query).await
    }
    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        self.inner.count(query).await
    }
    async fn chain(&self, correlation_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.chain(correlation_id).await
    }
    async fn chain_with_head(
        &self,
        correlation_id: &str,
    ) -> Result<(Vec<StoredEvent>, Option<ChainHead>), StoreError> {
        self.inner.chain_with_head(correlation_id).await
    }
    async fn chain_chunks(
        &self,
        correlation_id: &str,
        chunk_size: usize,
    ) -> Result<ChainChunks, StoreError> {
        self.inner.chain_chunks(correlation_id, chunk_size).await
    }
    async fn export_chunks(
        &self,
        query: &EventQuery,
        chunk_size: usize,
    ) -> Result<ExportChunks, StoreError> {
        self.inner.export_chunks(query, chunk_size).await
    }
    async fn chain_heads(&self) -> Result<Vec<(String, ChainHead)>, StoreError> {
        self.inner.chain_heads().await
    }
    async fn correlation_ids(&self) -> Result<Vec<String>, StoreError> {
        self.inner.correlation_ids().await
    }
    async fn append_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        self.inner.append_checkpoint(checkpoint).await
    }
    async fn checkpoints(&self, limit: usize) -> Result<Vec<CheckpointSummary>, StoreError> {
        self.inner.checkpoints(limit).await
    }
    async fn checkpoint(&self, id: Option<Uuid>) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.inner.checkpoint(id).await
    }
    async fn place_legal_hold(
        &self,
        correlation_id: &str,
        reason: &str,
        placed_by: &str,
    ) -> Result<(LegalHold, bool), StoreError> {
        self.inner
            .place_legal_hold(correlation_id, reason, placed_by)
            .await
    }
    async fn release_legal_hold(
        &self,
        correlation_id: &str,
        release_reason: &str,
        released_by: &str,
    ) -> Result<Option<LegalHoldReleased>, StoreError> {
        self.inner
            .release_legal_hold(correlation_id, release_reason, released_by)
            .await
    }
    async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        self.inner.legal_holds().await
    }
    async fn legal_hold_history(
        &self,
        correlation_id: &str,
    ) -> Result<Vec<LegalHoldAction>, StoreError> {
        self.inner.legal_hold_history(correlation_id).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn woken(counter: &EventCounter) -> bool {
        counter.wake.notified().now_or_never().is_some()
    }

    /// A checkpoint of many chains costs as much as that many events; the
    /// next one waits for at least as many new events, never fewer than the
    /// configured count.
    #[test]
    fn a_checkpoint_is_due_after_as_many_events_as_the_last_one_had_chains() {
        let counter = EventCounter::new(10);
        counter.add(9);
        assert!(!woken(&counter), "9 of 10 events");
        counter.add(1);
        assert!(woken(&counter), "10 of 10 events");

        counter.start_over();
        counter.covers(100);
        counter.add(60);
        counter.add(39);
        assert!(
            !woken(&counter),
            "99 events after a checkpoint of 100 chains"
        );
        counter.add(1);
        assert!(
            woken(&counter),
            "100 events after a checkpoint of 100 chains"
        );

        counter.start_over();
        counter.covers(3);
        counter.add(9);
        assert!(
            !woken(&counter),
            "a small checkpoint: the configured 10 still count"
        );
        counter.add(1);
        assert!(woken(&counter));
    }

    #[test]
    fn zero_means_never_by_count() {
        let counter = EventCounter::new(0);
        counter.add(1_000_000);
        assert!(!woken(&counter));
    }
}
