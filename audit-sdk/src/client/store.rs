//! [`AuditStore`]: the handle services record audit events through.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::backlog::Backlog;
use crate::config::AuditConfig;
use crate::errors::{CloseReport, FlushError, RecordError, SyncError};
use crate::event::AuditEvent;
use crate::intake::Command;
use crate::shared::Shared;
use crate::spool::{Spool, SpoolOptions};
use crate::transport::{self, Transport};
use crate::{delivery, intake, preflight};

/// Why a store could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error("invalid audit configuration: {0}")]
    Config(String),
    /// The spool directory cannot be opened.
    #[error("cannot open the audit spool: {0}")]
    Spool(#[from] std::io::Error),
    /// `AuditStore::new` was called outside a tokio runtime.
    #[error("AuditStore must be created inside a tokio runtime")]
    NoRuntime,
}

/// A cheap-to-clone handle to one audit pipeline: a non-blocking `record()`,
/// background batching and delivery, and honest `flush()` / `close()`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use audit_sdk::{AuditConfig, AuditEvent, AuditStore};
///
/// let store = AuditStore::new(AuditConfig::new("http://localhost:8080"))?;
/// let event = AuditEvent::builder("gateway.signal.received", "rr-0123456789ab-abcdefgh")
///     .category("gateway")
///     .action("received")
///     .actor("service", "gateway")
///     .resource("Deployment", "payments/api")
///     .build();
/// store.record(event)?;              // never blocks, never does I/O
/// store.flush().await?;              // Ok only once DataStorage acknowledged it
/// let report = store.close().await;  // delivered / spooled / lost
/// assert_eq!(report.lost, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AuditStore {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Command>,
    tasks: Arc<Mutex<Option<Tasks>>>,
}

#[derive(Debug)]
struct Tasks {
    intake: JoinHandle<()>,
    delivery: JoinHandle<()>,
    probe: JoinHandle<()>,
}

impl AuditStore {
    /// Starts a store with the transport the configuration names. Must be called
    /// inside a tokio runtime; opens (and recovers) the spool when configured.
    pub fn new(config: AuditConfig) -> Result<Self, StartError> {
        config.check().map_err(StartError::Config)?;
        let transport = transport::build(&config).map_err(StartError::Config)?;
        Self::with_transport(config, transport)
    }

    /// Starts a store over a given transport (tests, custom transports).
    pub fn with_transport(
        config: AuditConfig,
        transport: Box<dyn Transport>,
    ) -> Result<Self, StartError> {
        config.check().map_err(StartError::Config)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let (backlog, replayed) = match &config.spool_dir {
            Some(dir) => {
                let (spool, recovery) = Spool::open(SpoolOptions {
                    dir: dir.clone(),
                    max_bytes: config.spool_max_bytes,
                    segment_bytes: config.spool_segment_bytes,
                    fsync: config.spool_fsync,
                    fsync_interval: config.spool_fsync_interval,
                })?;
                if recovery.pending > 0 {
                    tracing::info!(events = recovery.pending, dir = %dir.display(), "audit spool holds undelivered events from an earlier run; delivering them first");
                }
                (Backlog::Spool(Box::new(spool)), recovery)
            }
            None => (Backlog::Memory(VecDeque::new()), Default::default()),
        };
        let shared = Shared::new(config, backlog, transport);
        if replayed.damaged_regions > 0 {
            shared.lose(
                "spool_damaged",
                replayed.damaged_regions,
                "damaged spool records were cut off at startup (count is of damaged regions)",
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = Tasks {
            intake: runtime.spawn(intake::run(shared.clone(), rx, replayed.pending)),
            delivery: runtime.spawn(delivery::run(shared.clone())),
            probe: runtime.spawn(preflight::run(shared.clone())),
        };
        if replayed.pending > 0 {
            shared.work.notify_one();
        }
        Ok(Self {
            shared,
            tx,
            tasks: Arc::new(Mutex::new(Some(tasks))),
        })
    }

    /// Records an event: validates it, gives it an id when it has none, and
    /// queues it for delivery. Never blocks and never does I/O.
    ///
    /// The only ways an event is not recorded are returned here: it is invalid,
    /// `buffer_capacity` events are already waiting in memory, or the store is
    /// closed. The last two are counted as lost and logged.
    pub fn record(&self, mut event: AuditEvent) -> Result<Uuid, RecordError> {
        event.event_id.get_or_insert_with(Uuid::now_v7);
        event.validate()?;
        self.enqueue(event)
    }

    /// Like [`record`](Self::record) without client-side validation. Only for
    /// tests that must put an event DataStorage refuses into a batch.
    #[doc(hidden)]
    pub fn record_unvalidated(&self, mut event: AuditEvent) -> Result<Uuid, RecordError> {
        event.event_id.get_or_insert_with(Uuid::now_v7);
        self.enqueue(event)
    }

    fn enqueue(&self, event: AuditEvent) -> Result<Uuid, RecordError> {
        let event_id = event.event_id.expect("set by the caller");
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared
                .lose("closed", 1, "record() called after close()");
            return Err(RecordError::Closed { event_id });
        }
        let capacity = self.shared.config.buffer_capacity;
        if self.shared.in_memory.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.shared.in_memory.fetch_sub(1, Ordering::AcqRel);
            self.shared.lose(
                "buffer_full",
                1,
                "audit buffer full (buffer_capacity); DataStorage is not keeping up or unreachable",
            );
            return Err(RecordError::Overflow { capacity, event_id });
        }
        self.shared
            .inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
        if self.shared.inbox_idle.swap(false, Ordering::AcqRel) {
            self.shared.inbox_wake.notify_one();
        }
        metrics::counter!(crate::metrics::RECORDED).increment(1);
        Ok(event_id)
    }

    /// Waits until every event recorded before this call is acknowledged by
    /// DataStorage, for at most the configured `flush_timeout`.
    pub async fn flush(&self) -> Result<(), FlushError> {
        self.flush_timeout(self.shared.config.flush_timeout).await
    }

    /// [`flush`](Self::flush) with an explicit timeout. On timeout the error
    /// says how many of those events are still pending; they stay queued.
    pub async fn flush_timeout(&self, timeout: Duration) -> Result<(), FlushError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Command::Flush(reply)).is_err() {
            return Err(FlushError::Closed {
                pending: self.unresolved_total(),
            });
        }
        let Ok(target) = answer.await else {
            return Err(FlushError::Closed {
                pending: self.unresolved_total(),
            });
        };
        let mut resolved = self.shared.resolved.subscribe();
        let waited = tokio::time::timeout(timeout, resolved.wait_for(|r| *r >= target)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let done = *self.shared.resolved.borrow();
                Err(FlushError::Timeout {
                    pending: target.saturating_sub(done),
                })
            }
        }
    }

    /// Waits until every event recorded before this call is written to the
    /// spool and fsynced (or delivered). Lets a process that is about to exit
    /// without `close()` know that nothing it recorded depends on memory.
    pub async fn sync(&self) -> Result<(), SyncError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Sync(reply))
            .map_err(|_| SyncError::Closed)?;
        answer.await.map_err(|_| SyncError::Closed)?
    }

    /// Stops accepting events, keeps delivering until everything is
    /// acknowledged or `shutdown_timeout` passes, then stops the background
    /// tasks and reports. Undelivered events stay in the spool (reported as
    /// spooled) or, without a spool, are lost (reported, counted and logged).
    /// Calling it again returns the counts as they are.
    pub async fn close(&self) -> CloseReport {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(tasks) = tasks else {
            return self.report(0);
        };
        self.shared.closed.store(true, Ordering::Release);
        let (reply, answer) = oneshot::channel();
        let (target, unwritten) = if self.tx.send(Command::Close(reply)).is_ok() {
            answer.await.unwrap_or((0, 0))
        } else {
            (0, 0)
        };
        let mut resolved = self.shared.resolved.subscribe();
        let drained = tokio::time::timeout(
            self.shared.config.shutdown_timeout,
            resolved.wait_for(|r| *r >= target),
        )
        .await
        .is_ok();
        self.shared.stop.cancel();
        let _ = tasks.delivery.await;
        let _ = tasks.intake.await;
        let _ = tasks.probe.await;
        let done = *self.shared.resolved.borrow();
        let mut lost_now = unwritten;
        if self.shared.config.spool_dir.is_none() {
            lost_now = target.saturating_sub(done);
        }
        if !drained || lost_now > 0 {
            tracing::warn!(
                pending = target.saturating_sub(done),
                timeout = ?self.shared.config.shutdown_timeout,
                "audit store closed before every event was delivered"
            );
        }
        self.shared.lose(
            "shutdown",
            lost_now,
            "undelivered audit events held only in memory at shutdown",
        );
        if let Some(spool) = self.shared.backlog().spool() {
            if let Err(e) = spool.sync() {
                tracing::error!(error = %e, "final audit spool fsync failed");
            }
        }
        let report = self.report(0);
        tracing::info!(
            delivered = report.delivered,
            spooled = report.spooled,
            lost = report.lost,
            rejected = report.rejected,
            "audit store closed"
        );
        report
    }

    fn report(&self, extra_lost: u64) -> CloseReport {
        let spooled = self.shared.backlog().spool().map_or(0, |s| s.pending());
        CloseReport {
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            spooled,
            lost: self.shared.lost.load(Ordering::Relaxed) + extra_lost,
            rejected: self.shared.rejected.load(Ordering::Relaxed),
        }
    }

    fn unresolved_total(&self) -> u64 {
        self.shared.in_memory.load(Ordering::Relaxed) as u64
    }

    /// Whether DataStorage answered the last readiness probe or delivery.
    /// Services gate their own `/readyz` on it.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    /// Events dropped so far (overflow, after close, shutdown without a spool).
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Ordering::Relaxed)
    }
}
