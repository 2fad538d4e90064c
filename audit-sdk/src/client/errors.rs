//! What the SDK's calls can answer.

use uuid::Uuid;

use crate::validation::ValidationErrors;

/// Why `record()` did not accept an event. Every variant except `Invalid` is
/// also counted in `audit_sdk_events_dropped_total{reason}` and logged.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The event breaks the contract; fix the caller.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// `buffer_capacity` events are already waiting: the event is lost.
    #[error("audit buffer full ({capacity} events waiting); event {event_id} was dropped")]
    Overflow {
        /// The configured bound.
        capacity: usize,
        /// The dropped event.
        event_id: Uuid,
    },
    /// The store was closed; the event was not recorded.
    #[error("audit store is closed; event {event_id} was dropped")]
    Closed {
        /// The dropped event.
        event_id: Uuid,
    },
}

impl RecordError {
    /// The `reason` label of the drop counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Overflow { .. } => "buffer_full",
            Self::Closed { .. } => "closed",
        }
    }
}

/// Why `flush()` could not confirm delivery.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlushError {
    /// The timeout passed with events still undelivered (they are still queued
    /// or spooled, not lost).
    #[error("flush timed out: {pending} event(s) recorded before the flush are not yet acknowledged by DataStorage")]
    Timeout {
        /// Events recorded before the flush and not yet acknowledged.
        pending: u64,
    },
    /// The store was closed before delivery completed.
    #[error("audit store closed with {pending} event(s) not acknowledged")]
    Closed {
        /// Events recorded before the flush and not acknowledged.
        pending: u64,
    },
    /// Every event recorded before the flush was resolved, but DataStorage's
    /// validation refused `count` of them: they were set aside (rejected file,
    /// metric), not stored. Each set-aside event is reported by one flush only.
    #[error("{count} audit event(s) recorded before the flush were refused by DataStorage's validation and set aside, not stored")]
    Rejected {
        /// Events set aside since the previous flush that reported some.
        count: u64,
    },
}

/// Why `sync()` could not confirm that events are on disk.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SyncError {
    /// No `spool_dir` is configured: nothing is ever written to disk.
    #[error("no spool_dir configured; events are kept in memory only")]
    NoSpool,
    /// Some events could not be written (spool full or disk error) and wait in memory.
    #[error("{pending} event(s) could not be written to the spool yet ({reason})")]
    NotWritten {
        /// Events still only in memory.
        pending: u64,
        /// Why.
        reason: String,
    },
    /// The store was closed.
    #[error("audit store is closed")]
    Closed,
    /// The timeout passed before the disk answered.
    #[error("the audit spool did not confirm the write within {0:?}")]
    Timeout(std::time::Duration),
}

/// What `close()` did with every event this store saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Acknowledged by DataStorage during this store's life.
    pub delivered: u64,
    /// Left in the disk spool, to be delivered by the next store using the same `spool_dir`.
    pub spooled: u64,
    /// Lost: dropped on overflow, or in memory when the shutdown deadline passed
    /// without a spool. Each one was logged with its reason.
    pub lost: u64,
    /// Permanently refused by DataStorage and set aside (rejected file, metric).
    pub rejected: u64,
}

/// Why `record_durable()` could not confirm that an event is on disk.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// The event was not recorded at all (invalid, overflow, closed).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Recorded (it waits in memory and is delivered as usual), but not
    /// confirmed on disk within the timeout: the spool is full or the disk
    /// fails or stalls. A crash now would lose it.
    #[error("audit event {event_id} recorded but not confirmed durable within {waited:?}")]
    Timeout {
        /// The event.
        event_id: Uuid,
        /// How long it was waited for.
        waited: std::time::Duration,
    },
    /// The store closed before the event was confirmed.
    #[error("audit store closed before event {event_id} was confirmed durable")]
    Closed {
        /// The event.
        event_id: Uuid,
    },
}
