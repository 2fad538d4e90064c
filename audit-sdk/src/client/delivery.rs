//! The delivery task: batches from the backlog to DataStorage, retried until
//! acknowledged.
//!
//! There is deliberately no "give up after N attempts": every failure is
//! retried with exponential backoff and jitter for as long as it lasts, while
//! the events wait in memory or in the spool. The one exception is
//! DataStorage's own validation problem, which names the refused events by
//! index: exactly those are set aside and the rest of the batch is resent at
//! once (no bisection, which would need the server to judge events one by one).
//! A refusal that is not about the events (wrong path, port or scheme, a proxy
//! or a mesh, a missing RBAC binding) is retried with one ERROR naming the URL
//! and the status, never set aside (see [`crate::transport`]).
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

use crate::backlog::Taken;
use crate::event::AuditEvent;
use crate::metrics as m;
use crate::problem::Problem;
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
    /// FIFO number of the batch's last event (see `Shared::resolved`).
    count: u64,
    mark: Option<Position>,
    started: Instant,
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let outage = Arc::new(Mutex::new(Outage::default()));
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // FIFO number of the last event taken (1-based; `resolved` counts the same way).
    let mut taken: u64 = 0;
    loop {
        // Start batches while there is room and work.
        while in_flight.len() < shared.config.max_in_flight {
            let available = shared.available();
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
                Ok(Some((batch, mark, skipped))) => {
                    // Damaged records skipped on the way were lost (counted by
                    // the spool); they resolve with this batch.
                    let count = batch.len() as u64 + skipped;
                    if skipped > 0 {
                        shared.lost.fetch_add(skipped, Ordering::Relaxed);
                    }
                    let first = taken + 1 + skipped;
                    taken += count;
                    let task = tokio::spawn(deliver(shared.clone(), batch, first, outage.clone()));
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

/// Takes the next batch on the blocking pool (spool reads are file I/O),
/// parsing spooled records with the backlog unlocked.
async fn take(shared: &Arc<Shared>) -> Result<Option<Taken>, ()> {
    let worker = shared.clone();
    let batch_size = shared.config.batch_size;
    match tokio::task::spawn_blocking(move || worker.take_batch(batch_size)).await {
        Ok(Ok((batch, _, 0))) if batch.is_empty() => Ok(None),
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
        let bytes = backlog.spool().map(|s| {
            worker.spool_pending.store(s.pending(), Ordering::Relaxed);
            s.bytes()
        });
        (result, bytes)
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

/// Delivers `events` (FIFO numbers from `first`): every event ends up
/// delivered or, when DataStorage's validation names it, set aside, unless
/// shutdown interrupts.
async fn deliver(
    shared: Arc<Shared>,
    events: Vec<AuditEvent>,
    first: u64,
    outage: Arc<Mutex<Outage>>,
) -> Result<(), Cancelled> {
    let shared = &shared;
    let mut seqs: Vec<u64> = (first..first + events.len() as u64).collect();
    let mut batch = events;
    // Events replayed from an earlier process's spool may have been stored
    // before that process died: their duplicates are expected.
    let mut first_attempt = first > shared.replayed;
    while !batch.is_empty() {
        match send_until_answered(shared, &batch, &outage, &mut first_attempt).await? {
            Answer::Stored(ack) => {
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
                return Ok(());
            }
            Answer::Invalid { indexes, problem } => {
                // All-or-nothing: nothing of this batch was stored. Set aside the
                // named events, resend the others.
                let mut keep_events = Vec::with_capacity(batch.len());
                let mut keep_seqs = Vec::with_capacity(batch.len());
                for (i, (event, seq)) in batch.into_iter().zip(seqs).enumerate() {
                    if indexes.binary_search(&i).is_ok() {
                        let reason = reason_for(&problem, i);
                        set_aside(shared, &event, seq, problem.status, &reason);
                    } else {
                        keep_events.push(event);
                        keep_seqs.push(seq);
                    }
                }
                batch = keep_events;
                seqs = keep_seqs;
            }
        }
    }
    Ok(())
}

/// The problem's messages about the event at `index`, for the rejected file.
fn reason_for(problem: &Problem, index: usize) -> String {
    let fields: Vec<String> = problem
        .errors
        .iter()
        .filter(|e| e.index == Some(index))
        .map(ToString::to_string)
        .collect();
    let detail = problem
        .detail
        .clone()
        .unwrap_or_else(|| problem.title.clone());
    if fields.is_empty() {
        detail
    } else {
        format!("{detail}: {}", fields.join("; "))
    }
}

/// DataStorage's final answer about a batch.
enum Answer {
    Stored(Ack),
    Invalid {
        indexes: Vec<usize>,
        problem: Box<Problem>,
    },
}

/// Sends until DataStorage answers for good; `Err` on shutdown.
async fn send_until_answered(
    shared: &Arc<Shared>,
    batch: &[AuditEvent],
    outage: &Mutex<Outage>,
    first_attempt: &mut bool,
) -> Result<Answer, Cancelled> {
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
        let was_first = std::mem::replace(first_attempt, false);
        let retry_after = match attempt {
            Ok(ack) => {
                lock(outage).recovered();
                if was_first && ack.duplicates > 0 {
                    warn_duplicates(batch, ack.duplicates);
                }
                return Ok(Answer::Stored(ack));
            }
            Err(SendError::Invalid { indexes, problem }) => {
                lock(outage).recovered();
                return Ok(Answer::Invalid { indexes, problem });
            }
            Err(SendError::Misrouted { status, reason }) => {
                metrics::counter!(m::MISROUTED, "status" => status.to_string()).increment(1);
                let mut o = lock(outage);
                if !o.misrouted_logged {
                    o.misrouted_logged = true;
                    tracing::error!(
                        target_url = %shared.transport.target(),
                        status,
                        reason,
                        "DataStorage delivery is refused by something that is not DataStorage's validation (wrong path, port or scheme in data_storage_url, a proxy or mesh in the way?); events are kept and retried, none is set aside; check data_storage_url"
                    );
                }
                o.failed(
                    shared,
                    &format!("misrouted ({status}): {reason}"),
                    batch.len(),
                );
                None
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
                let mut o = lock(outage);
                if !o.forbidden_logged {
                    o.forbidden_logged = true;
                    tracing::error!(url = %shared.config.data_storage_url, reason, "DataStorage refuses this service's credentials (RBAC); events are kept and retried until the role binding is fixed");
                }
                o.failed(shared, &format!("forbidden: {reason}"), batch.len());
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
        let delay = next_delay(computed, retry_after, shared.config.retry_max_delay);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.stop.cancelled() => return Err(Cancelled),
        }
    }
}

/// The wait before the next attempt: the backoff, or longer when the server's
/// `Retry-After` asks for it, but never past `cap` (a server asking for an
/// hour must not park audit delivery for an hour).
pub(crate) fn next_delay(
    computed: Duration,
    retry_after: Option<Duration>,
    cap: Duration,
) -> Duration {
    match retry_after {
        Some(ra) => ra.min(cap).max(computed),
        None => computed,
    }
}

/// A first attempt answered with duplicates: these ids were already stored
/// (an event id reused by a cloned builder or by the caller).
fn warn_duplicates(batch: &[AuditEvent], duplicates: u64) {
    metrics::counter!(m::DUPLICATE_IDS).increment(duplicates);
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    let repeated: Vec<String> = batch
        .iter()
        .filter_map(|e| e.event_id)
        .filter(|id| !seen.insert(*id))
        .map(|id| id.to_string())
        .collect();
    let ids = if repeated.is_empty() {
        // DataStorage does not say which; name the candidates (bounded).
        batch
            .iter()
            .filter_map(|e| e.event_id)
            .take(20)
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    } else {
        repeated.join(",")
    };
    tracing::warn!(
        duplicates,
        ids,
        "DataStorage already held events of a batch sent for the first time: an event id was reused (a cloned AuditEventBuilder, or an id set by the caller); those events were not stored again"
    );
}

fn lock(outage: &Mutex<Outage>) -> MutexGuard<'_, Outage> {
    outage.lock().unwrap_or_else(|p| p.into_inner())
}

fn set_aside(shared: &Arc<Shared>, event: &AuditEvent, seq: u64, status: u16, reason: &str) {
    shared.rejected.fetch_add(1, Ordering::Relaxed);
    shared.note_rejected(seq);
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
    /// The ERROR of a misrouted delivery was logged in this outage.
    misrouted_logged: bool,
    /// The ERROR of a forbidden delivery was logged in this outage.
    forbidden_logged: bool,
}

impl Outage {
    fn failed(&mut self, shared: &Shared, reason: &str, batch: usize) {
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

    fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(after = ?since.elapsed(), attempts = self.attempts, "audit delivery recovered");
        }
        self.attempts = 0;
        self.last_log = None;
        self.misrouted_logged = false;
        self.forbidden_logged = false;
    }
}
