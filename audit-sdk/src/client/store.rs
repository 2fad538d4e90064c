//! [`AuditStore`]: the handle services record audit events through.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::backlog::Backlog;
use crate::config::AuditConfig;
use crate::errors::{CloseReport, DurableError, FlushError, RecordError, SyncError};
use crate::event::AuditEvent;
use crate::intake::Command;
use crate::shared::Shared;
use crate::spool::file_io::{RealIo, SpoolIo};
use crate::spool::{Spool, SpoolOptions};
use crate::transport::{self, Transport};
use crate::{delivery, intake, preflight};

/// Why a wait for durability ended without it.
enum WaitError {
    Timeout(Duration),
    Closed,
}

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
    life: Arc<Life>,
}

/// Shared by the handles only (not the background tasks): when the last handle
/// goes without `close()`, its `Drop` says what is abandoned.
#[derive(Debug)]
struct Life {
    shared: Arc<Shared>,
    /// Taken by `close()`.
    tasks: Mutex<Option<Tasks>>,
}

impl Drop for Life {
    fn drop(&mut self) {
        let tasks = self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if tasks.is_none() {
            return; // closed
        }
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        let in_memory = shared.in_memory.load(Ordering::Acquire) as u64;
        let spooled = shared.spool_pending.load(Ordering::Relaxed);
        metrics::counter!(crate::metrics::DROPPED_WITHOUT_CLOSE).increment(1);
        tracing::warn!(
            abandoned_in_memory = in_memory,
            left_in_spool = spooled,
            "every AuditStore handle was dropped without close(): events held in memory are lost (counted as dropped_without_close), spooled events wait for the next store on this spool_dir"
        );
        shared.lose(
            "dropped_without_close",
            in_memory,
            "AuditStore dropped without close(); events held in memory abandoned",
        );
        shared.stop.cancel();
    }
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
        Self::with_transport_and_io(config, transport, Arc::new(RealIo))
    }

    /// Starts a store whose spool does its file I/O through `io` (tests that
    /// make the disk fail; production uses [`RealIo`]).
    pub fn with_transport_and_io(
        config: AuditConfig,
        transport: Box<dyn Transport>,
        io: Arc<dyn SpoolIo>,
    ) -> Result<Self, StartError> {
        config.check().map_err(StartError::Config)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let (backlog, replayed) = match &config.spool_dir {
            Some(dir) => {
                let (spool, recovery) = Spool::open_with(
                    SpoolOptions {
                        dir: dir.clone(),
                        max_bytes: config.spool_max_bytes,
                        segment_bytes: config.spool_segment_bytes,
                        fsync: config.spool_fsync,
                        fsync_interval: config.spool_fsync_interval,
                    },
                    io,
                )?;
                if recovery.pending > 0 {
                    tracing::info!(events = recovery.pending, dir = %dir.display(), "audit spool holds undelivered events from an earlier run; delivering them first");
                }
                (Backlog::Spool(Box::new(spool)), recovery)
            }
            None => (Backlog::Memory(Default::default()), Default::default()),
        };
        let shared = Shared::new(config, backlog, transport, replayed.pending);
        shared
            .spool_pending
            .store(replayed.pending, Ordering::Relaxed);
        if replayed.lost_events > 0 {
            shared.lose(
                "spool_damaged",
                replayed.lost_events,
                "damaged spool records were skipped at startup (counted in events from the sequence numbers)",
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
        let shared_for_life = shared.clone();
        Ok(Self {
            shared,
            tx,
            life: Arc::new(Life {
                shared: shared_for_life,
                tasks: Mutex::new(Some(tasks)),
            }),
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
        self.enqueue_numbered(event).map(|(id, _)| id)
    }

    /// Records an event and resolves once it is durable: written to the spool
    /// and fsynced (group commit: concurrent callers share one fsync), or
    /// acknowledged by DataStorage, whichever comes first. Without a
    /// `spool_dir` only DataStorage's acknowledgement makes it durable.
    ///
    /// A service that must not answer its caller without an audit record
    /// (the Gateway) answers after this returns: then a SIGKILL of the
    /// service right after the answer loses nothing. Waits at most
    /// `flush_timeout`; on timeout the event is still recorded (in memory).
    pub async fn record_durable(&self, mut event: AuditEvent) -> Result<Uuid, DurableError> {
        event.event_id.get_or_insert_with(Uuid::now_v7);
        event.validate().map_err(RecordError::from)?;
        let (event_id, number) = self.enqueue_numbered(event)?;
        let timeout = self.shared.config.flush_timeout;
        self.wait_durable(number, tokio::time::Instant::now() + timeout)
            .await
            .map_err(|e| match e {
                WaitError::Timeout(waited) => DurableError::Timeout { event_id, waited },
                WaitError::Closed => DurableError::Closed { event_id },
            })?;
        Ok(event_id)
    }

    /// Waits until every event up to FIFO number `number` is durable.
    async fn wait_durable(
        &self,
        number: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), WaitError> {
        let shared = &self.shared;
        let started = tokio::time::Instant::now();
        let mut durable = shared.durable.subscribe();
        let mut resolved = shared.resolved.subscribe();
        if shared.config.spool_dir.is_some() {
            shared.durable_wanted.fetch_max(number, Ordering::AcqRel);
            // The intake may be asleep with the event already written.
            shared.inbox_wake.notify_one();
        } else {
            shared.urgent.notify_one();
        }
        let done = async {
            tokio::select! {
                r = durable.wait_for(|d| *d >= number) => r.map(|_| ()),
                r = resolved.wait_for(|r| *r >= number) => r.map(|_| ()),
            }
        };
        match tokio::time::timeout_at(deadline, done).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WaitError::Closed),
            Err(_) => Err(WaitError::Timeout(
                deadline.saturating_duration_since(started),
            )),
        }
    }

    fn enqueue_numbered(&self, event: AuditEvent) -> Result<(Uuid, u64), RecordError> {
        let event_id = event.event_id.expect("set by the caller");
        // `closed` is checked under the inbox lock, and `close()` sets it under
        // the same lock: an event accepted here is in the inbox before close's
        // command drains it, so the intake always sees it.
        let mut inbox = self.shared.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.closed.load(Ordering::Acquire) {
            drop(inbox);
            self.shared
                .lose("closed", 1, "record() called after close()");
            return Err(RecordError::Closed { event_id });
        }
        let capacity = self.shared.config.buffer_capacity;
        // Only record() raises `in_memory`, always under the inbox lock held
        // here; the tasks only lower it. So the load is a bound that cannot
        // be overtaken before the increment below.
        if self.shared.in_memory.load(Ordering::Acquire) >= capacity {
            drop(inbox);
            self.shared.lose(
                "buffer_full",
                1,
                "audit buffer full (buffer_capacity); DataStorage is not keeping up or unreachable",
            );
            return Err(RecordError::Overflow { capacity, event_id });
        }
        self.shared.in_memory.fetch_add(1, Ordering::AcqRel);
        inbox.push(event);
        // `recorded` is written only here, under the inbox lock: a load and a
        // store number the events in inbox order without a second atomic
        // read-modify-write per call.
        let number = self.shared.recorded.load(Ordering::Relaxed) + 1;
        self.shared.recorded.store(number, Ordering::Release);
        drop(inbox);
        // Wake the intake once per burst: only when it said it sleeps. A plain
        // load first keeps the flag's cache line shared while the intake is
        // busy (a swap on every call would bounce it between cores). The
        // intake sets the flag before its last look at the inbox under the
        // lock this call just released, so a push it missed sees the flag.
        if self.shared.inbox_idle.load(Ordering::Acquire)
            && self.shared.inbox_idle.swap(false, Ordering::AcqRel)
        {
            self.shared.inbox_wake.notify_one();
        }
        Ok((event_id, number))
    }

    /// Waits until every event recorded before this call is acknowledged by
    /// DataStorage, for at most the configured `flush_timeout`.
    pub async fn flush(&self) -> Result<(), FlushError> {
        self.flush_timeout(self.shared.config.flush_timeout).await
    }

    /// [`flush`](Self::flush) with an explicit timeout. On timeout the error
    /// says how many of those events are still pending; they stay queued.
    pub async fn flush_timeout(&self, timeout: Duration) -> Result<(), FlushError> {
        // One deadline covers the intake's answer too: a disk that hangs the
        // intake must not hang the flush.
        let deadline = tokio::time::Instant::now() + timeout;
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Command::Flush(reply)).is_err() {
            return Err(FlushError::Closed {
                pending: self.unresolved_total(),
            });
        }
        let target = match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(target)) => target,
            Ok(Err(_)) => {
                return Err(FlushError::Closed {
                    pending: self.unresolved_total(),
                })
            }
            Err(_) => {
                return Err(FlushError::Timeout {
                    pending: self.unresolved_total(),
                })
            }
        };
        let mut resolved = self.shared.resolved.subscribe();
        let waited = tokio::time::timeout_at(deadline, resolved.wait_for(|r| *r >= target)).await;
        match waited {
            Ok(Ok(_)) => match self.shared.take_rejected_upto(target) {
                0 => Ok(()),
                count => Err(FlushError::Rejected { count }),
            },
            _ => {
                let done = *self.shared.resolved.borrow();
                Err(FlushError::Timeout {
                    pending: target.saturating_sub(done),
                })
            }
        }
    }

    /// Waits until every event recorded before this call is written to the
    /// spool and fsynced (or delivered), for at most `flush_timeout`. Lets a
    /// process that is about to exit without `close()` know that nothing it
    /// recorded depends on memory. Group-committed with concurrent
    /// [`record_durable`](Self::record_durable) calls.
    pub async fn sync(&self) -> Result<(), SyncError> {
        self.sync_within(tokio::time::Instant::now() + self.shared.config.flush_timeout)
            .await
    }

    /// [`sync`](Self::sync) bounded by the caller's own `deadline` (a request
    /// that must be answered before its sender gives up). A disk that fails
    /// keeps the events in memory and this returns
    /// [`SyncError::NotWritten`] at the deadline; a disk that stalls too.
    pub async fn sync_within(&self, deadline: tokio::time::Instant) -> Result<(), SyncError> {
        if self.shared.config.spool_dir.is_none() {
            return Err(SyncError::NoSpool);
        }
        let number = self.shared.recorded.load(Ordering::Acquire);
        match self.wait_durable(number, deadline).await {
            Ok(()) => Ok(()),
            Err(WaitError::Closed) => Err(SyncError::Closed),
            Err(WaitError::Timeout(waited)) => {
                let durable = *self.shared.durable.borrow();
                let resolved = *self.shared.resolved.borrow();
                Err(SyncError::NotWritten {
                    pending: number.saturating_sub(durable.max(resolved)),
                    reason: format!(
                        "not confirmed on disk within {waited:?} (spool full or disk failing?)"
                    ),
                })
            }
        }
    }

    /// Stops accepting events, keeps delivering until everything is
    /// acknowledged or `shutdown_timeout` passes, then stops the background
    /// tasks and reports. Undelivered events stay in the spool (reported as
    /// spooled) or, without a spool, are lost (reported, counted and logged).
    /// Calling it again returns the counts as they are.
    pub async fn close(&self) -> CloseReport {
        let tasks = self
            .life
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(tasks) = tasks else {
            return self.report(0);
        };
        let timeout = self.shared.config.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        {
            let _inbox = self.shared.inbox.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.closed.store(true, Ordering::Release);
        }
        let (reply, answer) = oneshot::channel();
        let (target, unwritten) = if self.tx.send(Command::Close(reply)).is_ok() {
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(answer) => answer.unwrap_or((0, 0)),
                // The intake is stuck (a disk that does not answer): everything
                // it holds is unaccounted for on disk.
                Err(_) => {
                    tracing::error!(
                        ?timeout,
                        "audit intake did not answer close() in time (disk stalled?)"
                    );
                    (0, self.shared.in_memory.load(Ordering::Acquire) as u64)
                }
            }
        } else {
            (0, 0)
        };
        let mut resolved = self.shared.resolved.subscribe();
        let drained = tokio::time::timeout_at(deadline, resolved.wait_for(|r| *r >= target))
            .await
            .is_ok();
        self.shared.stop.cancel();
        // Tasks stop at their next await; a blocking spool call in progress
        // is not waited for past the deadline (plus a short grace).
        let grace = deadline.max(tokio::time::Instant::now()) + Duration::from_millis(250);
        let _ = tokio::time::timeout_at(grace, async {
            let _ = tasks.delivery.await;
            let _ = tasks.intake.await;
            let _ = tasks.probe.await;
        })
        .await;
        let done = *self.shared.resolved.borrow();
        let mut lost_now = unwritten;
        if self.shared.config.spool_dir.is_none() {
            lost_now = target.saturating_sub(done);
        }
        if !drained || lost_now > 0 {
            tracing::warn!(
                pending = target.saturating_sub(done),
                ?timeout,
                "audit store closed before every event was delivered"
            );
        }
        self.shared.lose(
            "shutdown",
            lost_now,
            "undelivered audit events held only in memory at shutdown",
        );
        if self.shared.config.spool_dir.is_some() {
            let worker = self.shared.clone();
            let synced = tokio::task::spawn_blocking(move || {
                if let Some(spool) = worker.backlog().spool() {
                    if let Err(e) = spool.sync() {
                        tracing::error!(error = %e, "final audit spool fsync failed");
                    }
                    worker
                        .spool_pending
                        .store(spool.pending(), Ordering::Relaxed);
                    // Another store may take the directory over from now on.
                    spool.release();
                }
            });
            if tokio::time::timeout_at(grace, synced).await.is_err() {
                tracing::error!("final audit spool fsync did not finish in time");
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
        let spooled = self.shared.spool_pending.load(Ordering::Relaxed);
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

    /// What the service should answer on its own `/readyz`: `Down` until
    /// DataStorage has answered once after start, then `Ready`, or `Degraded`
    /// (still serving) while DataStorage does not answer and events still fit.
    /// See [`Readiness`](crate::Readiness).
    pub fn readiness(&self) -> crate::Readiness {
        crate::readiness::evaluate(&self.shared)
    }

    /// Whether DataStorage answered the last readiness probe (and events fit):
    /// [`readiness`](Self::readiness) is exactly `Ready`. Kept for
    /// compatibility; services gate `/readyz` on `readiness()`.
    pub fn is_ready(&self) -> bool {
        self.readiness() == crate::Readiness::Ready
    }

    /// The configuration this store runs with.
    pub fn config(&self) -> &AuditConfig {
        &self.shared.config
    }

    /// Events dropped so far (overflow, after close, shutdown without a spool).
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Ordering::Relaxed)
    }
}
