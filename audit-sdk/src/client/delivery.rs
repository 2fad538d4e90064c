//! The delivery task: batches from the backlog to DataStorage, retried until
//! acknowledged.
//!
//! There is deliberately no "give up after N attempts": a transient failure
//! (connect, DNS, timeout, 5xx, 429, 401) is retried with exponential backoff
//! and jitter for as long as it lasts, while the events wait in memory or in the
//! spool. A permanent refusal (another 4xx) is bisected so that only the events
//! the server refuses on their own are set aside; their neighbours are delivered.
//! A 403 is a missing RBAC binding, not a bad event: it is retried too, with an
//! ERROR that says so.
//!
//! Up to `max_in_flight` batches travel at once (DataStorage parses one while it
//! stores another); they are acknowledged strictly in the order they were
//! taken, so `flush()` and the spool cursor only ever move over a prefix of
//! delivered events.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::task::JoinHandle;

use crate::event::AuditEvent;
use crate::metrics as m;
use crate::shared::Shared;
use crate::spool::Position;
use crate::transport::{Ack, SendError};

/// A batch delivery was interrupted by shutdown.
struct Cancelled;

/// How often a still-failing delivery is summarised in the log.
const STILL_FAILING_LOG_EVERY: Duration = Duration::from_secs(60);

/// A batch on its way, in the order it was taken.
struct InFlight {
    task: JoinHandle<Result<(), Cancelled>>,
    count: u64,
    mark: Option<Position>,
    started: Instant,
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let outage = Arc::new(Mutex::new(Outage::default()));
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    loop {
        // Start batches while there is room and work.
        while in_flight.len() < shared.config.max_in_flight {
            let available = shared.backlog().available();
            if available == 0 {
                break;
            }
            if available < shared.config.batch_size as u64 {
                if !in_flight.is_empty() {
                    break; // send partial batches only when nothing else is on its way
                }
                // Let the batch fill, unless a flush or a full batch says otherwise.
                tokio::select! {
                    () = tokio::time::sleep(shared.config.flush_interval) => {}
                    () = shared.urgent.notified() => {}
                    () = shared.stop.cancelled() => return,
                }
            }
            match take(&shared).await {
                Ok(Some((batch, mark))) => {
                    let count = batch.len() as u64;
                    let task = tokio::spawn(deliver(shared.clone(), batch, outage.clone()));
                    in_flight.push_back(InFlight {
                        task,
                        count,
                        mark,
                        started: Instant::now(),
                    });
                }
                Ok(None) => break,
                Err(()) => {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => break,
                        () = shared.stop.cancelled() => return,
                    }
                }
            }
        }
        let Some(oldest) = in_flight.pop_front() else {
            tokio::select! {
                () = shared.work.notified() => continue,
                () = shared.stop.cancelled() => return,
            }
        };
        // Deliveries stop themselves on shutdown; their result says so.
        if !matches!(oldest.task.await, Ok(Ok(()))) {
            for rest in in_flight {
                let _ = rest.task.await;
            }
            return;
        }
        metrics::histogram!(m::DELIVERY_LATENCY).record(oldest.started.elapsed().as_secs_f64());
        resolve(&shared, oldest.mark, oldest.count).await;
    }
}

/// Takes the next batch on the blocking pool (spool reads are file I/O).
async fn take(shared: &Arc<Shared>) -> Result<Option<(Vec<AuditEvent>, Option<Position>)>, ()> {
    let worker = shared.clone();
    let batch_size = shared.config.batch_size;
    match tokio::task::spawn_blocking(move || worker.backlog().take(batch_size)).await {
        Ok(Ok((batch, _))) if batch.is_empty() => Ok(None),
        Ok(Ok(taken)) => Ok(Some(taken)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the audit spool");
            Err(())
        }
        Err(_) => Err(()),
    }
}

/// Records that a batch is resolved: spool cursor, memory bound, flush waiters.
async fn resolve(shared: &Arc<Shared>, mark: Option<Position>, count: u64) {
    let worker = shared.clone();
    let acked = tokio::task::spawn_blocking(move || {
        let mut backlog = worker.backlog();
        let result = backlog.ack(mark, count);
        (result, backlog.spool().map(|s| s.bytes()))
    })
    .await;
    if let Ok((result, bytes)) = acked {
        if let Err(e) = result {
            // Delivered anyway; a restart would resend them (deduplicated).
            tracing::warn!(error = %e, "cannot persist the audit spool cursor");
        }
        if let Some(bytes) = bytes {
            metrics::gauge!(m::SPOOL_BYTES).set(bytes as f64);
        }
    }
    if shared.config.spool_dir.is_none() {
        shared
            .in_memory
            .fetch_sub(count as usize, Ordering::Relaxed);
    }
    shared.update_gauges();
    shared.resolved.send_modify(|r| *r += count);
    shared.space.notify_one();
}

/// Delivers `events`, bisecting on permanent refusal; every event ends up
/// delivered or set aside unless shutdown interrupts.
async fn deliver(
    shared: Arc<Shared>,
    events: Vec<AuditEvent>,
    outage: Arc<Mutex<Outage>>,
) -> Result<(), Cancelled> {
    let shared = &shared;
    // An explicit stack instead of recursion: halves are processed in order.
    let mut stack = vec![events];
    while let Some(batch) = stack.pop() {
        match send_until_answered(shared, &batch, &outage).await? {
            Ok(ack) => {
                let n = batch.len() as u64;
                shared.delivered.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(m::DELIVERED).increment(n);
                if ack.created + ack.duplicates != n {
                    tracing::warn!(
                        sent = n,
                        created = ack.created,
                        duplicates = ack.duplicates,
                        "DataStorage acknowledged a different number of events than sent"
                    );
                }
            }
            Err((status, reason)) if batch.len() == 1 => {
                set_aside(shared, &batch[0], status, &reason)
            }
            Err(_) => {
                let mut left = batch;
                let right = left.split_off(left.len() / 2);
                stack.push(right);
                stack.push(left);
            }
        }
    }
    Ok(())
}

/// Sends until DataStorage answers for good: `Ok(Ok)` acknowledged,
/// `Ok(Err)` permanently refused, `Err` shutdown.
async fn send_until_answered(
    shared: &Arc<Shared>,
    batch: &[AuditEvent],
    outage: &Mutex<Outage>,
) -> Result<Result<Ack, (u16, String)>, Cancelled> {
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(shared.config.retry_min_delay)
        .with_max_delay(shared.config.retry_max_delay)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let token = shared.tokens.get().await;
        let attempt = tokio::select! {
            r = shared.transport.send(batch, token.as_deref()) => r,
            () = shared.stop.cancelled() => return Err(Cancelled),
        };
        let retry_after = match attempt {
            Ok(ack) => {
                lock(outage).recovered(shared);
                return Ok(Ok(ack));
            }
            Err(SendError::Permanent {
                status,
                reason,
                problem,
            }) => {
                lock(outage).recovered(shared);
                let detail = problem
                    .map(|p| {
                        let fields: Vec<String> =
                            p.errors.iter().map(ToString::to_string).collect();
                        if fields.is_empty() {
                            reason.clone()
                        } else {
                            format!("{reason}: {}", fields.join("; "))
                        }
                    })
                    .unwrap_or(reason);
                return Ok(Err((status, detail)));
            }
            Err(SendError::Unauthorized { reason }) => {
                shared.tokens.invalidate();
                lock(outage).failed(
                    shared,
                    &format!("unauthorized ({reason}); re-reading the token"),
                    batch.len(),
                );
                None
            }
            Err(SendError::Forbidden { reason }) => {
                if lock(outage).since.is_none() {
                    tracing::error!(url = %shared.config.data_storage_url, reason, "DataStorage refuses this service's credentials (RBAC); events are kept and retried until the role binding is fixed");
                }
                lock(outage).failed(shared, &format!("forbidden: {reason}"), batch.len());
                None
            }
            Err(SendError::Transient {
                reason,
                retry_after,
            }) => {
                lock(outage).failed(shared, &reason, batch.len());
                retry_after
            }
        };
        metrics::counter!(m::RETRIED_BATCHES).increment(1);
        let computed = backoff.next().unwrap_or(shared.config.retry_max_delay);
        let delay = retry_after.map_or(computed, |ra| ra.max(computed));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.stop.cancelled() => return Err(Cancelled),
        }
    }
}

fn lock(outage: &Mutex<Outage>) -> MutexGuard<'_, Outage> {
    outage.lock().unwrap_or_else(|p| p.into_inner())
}

fn set_aside(shared: &Arc<Shared>, event: &AuditEvent, status: u16, reason: &str) {
    shared.rejected.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(m::REJECTED).increment(1);
    let id = event.event_id.map(|i| i.to_string()).unwrap_or_default();
    match &shared.config.spool_dir {
        Some(dir) => match crate::spool::append_rejected(dir, event, status, reason) {
            Ok(()) => {
                tracing::error!(event_id = %id, status, reason, file = %dir.join(crate::spool::REJECTED_FILE).display(), "DataStorage refused an audit event; set aside in the rejected file")
            }
            Err(e) => {
                tracing::error!(event_id = %id, status, reason, error = %e, event = %serde_json::to_string(event).unwrap_or_default(), "DataStorage refused an audit event and the rejected file cannot be written; the event is in this log line")
            }
        },
        None => {
            tracing::error!(event_id = %id, status, reason, event = %serde_json::to_string(event).unwrap_or_default(), "DataStorage refused an audit event (no spool_dir for a rejected file); the event is in this log line")
        }
    }
}

/// Keeps the log readable during an outage: one line when it starts, a summary
/// every minute, one line when it ends.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    last_log: Option<Instant>,
    attempts: u64,
}

impl Outage {
    fn failed(&mut self, shared: &Shared, reason: &str, batch: usize) {
        shared.ready.store(false, Ordering::Relaxed);
        self.attempts += 1;
        let now = Instant::now();
        match self.since {
            None => {
                self.since = Some(now);
                self.last_log = Some(now);
                tracing::warn!(url = %shared.config.data_storage_url, reason, batch, "audit delivery failed; retrying with backoff (events are kept, not dropped)");
            }
            Some(since)
                if self
                    .last_log
                    .is_some_and(|l| l.elapsed() >= STILL_FAILING_LOG_EVERY) =>
            {
                self.last_log = Some(now);
                tracing::warn!(url = %shared.config.data_storage_url, reason, failing_for = ?since.elapsed(), attempts = self.attempts, waiting_in_memory = shared.in_memory.load(Ordering::Relaxed), "audit delivery still failing; still retrying");
            }
            Some(_) => tracing::debug!(reason, "audit delivery attempt failed"),
        }
    }

    fn recovered(&mut self, shared: &Shared) {
        shared.ready.store(true, Ordering::Relaxed);
        if let Some(since) = self.since.take() {
            tracing::info!(after = ?since.elapsed(), attempts = self.attempts, "audit delivery recovered");
        }
        self.attempts = 0;
        self.last_log = None;
    }
}
