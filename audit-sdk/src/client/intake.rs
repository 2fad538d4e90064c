//! The intake task: takes recorded events off the channel and appends them to
//! the backlog (memory or spool), in order.
//!
//! It runs apart from delivery so that a long DataStorage outage (delivery
//! sleeping between retries) never delays writing new events to the spool.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::errors::SyncError;
use crate::event::AuditEvent;
use crate::inbox::{self, BurstSize};
use crate::shared::Shared;

/// What the handles ask of the intake task. Each command first takes every
/// event recorded before it from the inbox, so it applies to all of them.
#[derive(Debug)]
pub(crate) enum Command {
    /// Replies with the sequence number of the last event recorded before it.
    Flush(oneshot::Sender<u64>),
    /// Stops intake; replies with (last sequence number, events that could not be written).
    Close(oneshot::Sender<(u64, u64)>),
}

/// How long a busy intake waits for more events before writing a burst; this
/// bounds the latency it adds and lets one write (and one fsync) cover many events.
const LINGER: Duration = Duration::from_millis(1);

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    first_seq: u64,
) {
    let spooled = shared.config.spool_dir.is_some();
    let mut seq = first_seq;
    // Recorded events not yet in the backlog (waiting for spool space).
    let mut pending: Vec<AuditEvent> = Vec::new();
    // The vector the producers get at the next drain, and the bursts it is
    // sized for (see `crate::inbox`).
    let mut spare: Vec<AuditEvent> = Vec::new();
    let mut bursts = BurstSize::default();
    let mut tick = tokio::time::interval(
        shared
            .config
            .spool_fsync_interval
            .max(Duration::from_millis(10)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let arrived = shared.drain_inbox(&mut spare);
        let busy = !arrived.is_empty();
        seq += arrived.len() as u64;
        bursts.saw(arrived.len());
        take_over(&mut pending, arrived);
        // A failed fsync was logged; the next turn tries again.
        let fsync_ran = write(&shared, &mut pending, seq, (&mut spare, bursts)).await;
        if !fsync_ran && spooled {
            commit_durable(&shared, seq - pending.len() as u64).await;
        }
        if !busy {
            shared.inbox_idle.store(true, Ordering::Release);
            // A record between the drain and the flag saw `idle == false` and did
            // not wake us: look once more before sleeping.
            if !shared
                .inbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
            {
                shared.inbox_idle.store(false, Ordering::Release);
                continue;
            }
        }
        // A busy intake lingers to gather a bigger burst, but a durable
        // waiter (`record_durable`, `sync`) wakes it at once: the waiters
        // that arrive while one write and fsync run share the next ones, so
        // the group commit forms by itself and lingering would only add to
        // every caller's wait. Plain records wake an idle intake only (the
        // flag above), so they do not cut a busy linger short.
        let command = tokio::select! {
            command = rx.recv() => command,
            () = shared.inbox_wake.notified() => continue,
            () = tokio::time::sleep(LINGER), if busy => continue,
            _ = tick.tick() => {
                if spooled {
                    sync_if_due(&shared).await;
                }
                continue;
            }
            () = shared.space.notified(), if !pending.is_empty() => continue,
        };
        shared.inbox_idle.store(false, Ordering::Release);
        let arrived = shared.drain_inbox(&mut spare);
        seq += arrived.len() as u64;
        bursts.saw(arrived.len());
        take_over(&mut pending, arrived);
        write(&shared, &mut pending, seq, (&mut spare, bursts)).await;
        match command {
            None => return, // every handle is gone without close()
            Some(Command::Flush(reply)) => {
                shared.urgent.notify_one();
                let _ = reply.send(seq);
            }
            Some(Command::Close(reply)) => {
                if spooled && sync(&shared, 0).await.is_ok() {
                    publish_durable(&shared, seq - pending.len() as u64);
                }
                shared.urgent.notify_one();
                let _ = reply.send((seq, pending.len() as u64));
                return;
            }
        }
    }
}

/// Appends a burst to the events waiting for the backlog, moving none of
/// them when nothing waits (the usual case: the burst's vector itself goes on).
fn take_over(pending: &mut Vec<AuditEvent>, arrived: Vec<AuditEvent>) {
    if pending.is_empty() {
        *pending = arrived;
    } else {
        pending.extend(arrived);
    }
}

/// Group commit for durable acknowledgements: when a waiter wants events
/// that are written but not yet known to be on disk, one fsync (on the
/// blocking pool, never on an async worker) covers everything written so far.
/// Records arriving during the fsync wait in the inbox and share the next one.
async fn commit_durable(shared: &Arc<Shared>, written_upto: u64) {
    if !durable_wanted(shared) || written_upto <= *shared.durable.borrow() {
        return;
    }
    if sync(shared, 0).await.is_ok() {
        publish_durable(shared, written_upto);
    }
}

fn publish_durable(shared: &Shared, upto: u64) {
    shared.durable.send_if_modified(|d| {
        let newer = upto > *d;
        if newer {
            *d = upto;
        }
        newer
    });
}

async fn sync_if_due(shared: &Arc<Shared>) {
    let shared = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(spool) = shared.backlog().spool() {
            if let Err(e) = spool.sync_if_due() {
                tracing::error!(error = %e, "audit spool fsync failed");
            }
        }
    })
    .await;
}

/// Whether a durable waiter wants events the last published fsync does not
/// cover (only stores with a spool have such waiters).
fn durable_wanted(shared: &Shared) -> bool {
    shared.durable_wanted.load(Ordering::Acquire) > *shared.durable.borrow()
}

/// Moves `pending` into the backlog as far as it fits, on the blocking pool
/// (spool writes are file I/O). When a durable waiter is already waiting,
/// the fsync follows in the same blocking call (one hand-off to the pool
/// instead of two, which is most of a group commit's latency when the cores
/// are busy) and publishes the events up to `seq` that it made durable;
/// answers whether that fsync ran (successful or not). The same call then
/// refills a `spare` too small for the expected bursts, so faulting its
/// memory in never runs on an async worker nor before the publication.
async fn write(
    shared: &Arc<Shared>,
    pending: &mut Vec<AuditEvent>,
    seq: u64,
    (spare, bursts): (&mut Vec<AuditEvent>, BurstSize),
) -> bool {
    if pending.is_empty() {
        return false;
    }
    let sync_after = durable_wanted(shared);
    let batch = std::mem::take(pending);
    let capacity = bursts.capacity();
    let refill = (spare.capacity() < capacity).then_some(capacity);
    let worker = shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut batch = batch;
        let mut backlog = worker.backlog();
        let outcome = backlog.push(&mut batch);
        let mut synced = false;
        if sync_after && outcome.is_ok() {
            if let Some(spool) = backlog.spool() {
                match spool.sync() {
                    Ok(()) => publish_durable(&worker, seq - batch.len() as u64),
                    Err(e) => tracing::error!(error = %e, "audit spool fsync failed; durable acknowledgements wait"),
                }
                synced = true;
            }
        }
        let available = backlog.available();
        let bytes = backlog.spool().map(|s| {
            worker.spool_pending.store(s.pending(), Ordering::Relaxed);
            s.bytes()
        });
        // After the publication (a durable waiter does not wait for it) and
        // without the backlog (delivery does not either).
        drop(backlog);
        let refilled = refill.map(|capacity| inbox::refill(&worker, capacity, &mut batch));
        (batch, outcome, available, bytes, synced, refilled)
    })
    .await;
    let Ok((rest, outcome, available, bytes, synced, refilled)) = result else {
        tracing::error!("audit intake worker panicked");
        return false;
    };
    *pending = rest;
    if let Some(refilled) = refilled {
        *spare = refilled;
    }
    shared
        .spool_full
        .store(outcome.is_ok() && !pending.is_empty(), Ordering::Relaxed);
    match outcome {
        Ok(written) => {
            if shared.config.spool_dir.is_some() {
                // On disk now; memory is free for new records.
                shared.in_memory.fetch_sub(written, Ordering::Relaxed);
            }
            if !pending.is_empty() {
                tracing::warn!(
                    waiting = pending.len(),
                    "audit spool is full (spool_max_bytes); events wait in memory until delivery frees space"
                );
            }
        }
        Err(e) => {
            tracing::error!(error = %e, waiting = pending.len(), "cannot write to the audit spool; events wait in memory")
        }
    }
    if let Some(bytes) = bytes {
        metrics::gauge!(crate::metrics::SPOOL_BYTES).set(bytes as f64);
    }
    shared.update_gauges();
    shared.work.notify_one();
    if available >= shared.config.batch_size as u64 {
        shared.urgent.notify_one();
    }
    synced
}

async fn sync(shared: &Arc<Shared>, unwritten: u64) -> Result<(), SyncError> {
    if shared.config.spool_dir.is_none() {
        return Err(SyncError::NoSpool);
    }
    let worker = shared.clone();
    let synced = tokio::task::spawn_blocking(move || match worker.backlog().spool() {
        Some(spool) => spool.sync().map_err(|e| {
            tracing::error!(error = %e, "audit spool fsync failed; durable acknowledgements wait");
            e.to_string()
        }),
        None => Ok(()),
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match synced {
        Err(reason) => Err(SyncError::NotWritten {
            pending: unwritten,
            reason,
        }),
        Ok(()) if unwritten > 0 => Err(SyncError::NotWritten {
            pending: unwritten,
            reason: "spool full".into(),
        }),
        Ok(()) => Ok(()),
    }
}
