//! State shared by the `AuditStore` handles and the background tasks.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::backlog::{Backlog, Taken, Taking};
use crate::config::AuditConfig;
use crate::event::AuditEvent;
use crate::metrics as m;
use crate::token::TokenSource;
use crate::transport::Transport;

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: AuditConfig,
    /// Locked on the blocking pool only: a spool write holds it through its
    /// fsync and a spool read through a whole batch, so an async worker
    /// waiting for it would stall every task behind it (the durable
    /// waiters' wake-ups among them). Async code reads [`Self::available`].
    backlog: Mutex<Backlog>,
    /// Events in the backlog not yet taken by delivery, as of the last
    /// release of the backlog lock (see [`BacklogGuard`]).
    available: AtomicU64,
    pub transport: Box<dyn Transport>,
    pub tokens: TokenSource,
    /// Recorded events not yet taken by the intake task. A plain mutex-guarded
    /// vector instead of a channel: `record()` then costs a lock and a push, and
    /// wakes the intake task only when it is idle (see [`crate::intake`]).
    pub inbox: Mutex<Vec<AuditEvent>>,
    /// The intake task found the inbox empty and waits for `inbox_wake`.
    pub inbox_idle: AtomicBool,
    pub inbox_wake: Notify,
    /// Events held in memory: queued for intake, waiting for spool space, or
    /// (memory mode) waiting for delivery. Bounded by `buffer_capacity`.
    pub in_memory: AtomicUsize,
    /// Set once `close()` starts; `record()` refuses from then on.
    pub closed: AtomicBool,
    /// FIFO number of the last event accepted by `record()` (incremented under
    /// the inbox lock, so numbers follow inbox order).
    pub recorded: AtomicU64,
    /// FIFO number up to which every event is written to the spool and
    /// fsynced (group commit; see `crate::intake`).
    pub durable: watch::Sender<u64>,
    /// Highest FIFO number a durable-ack waiter asked for.
    pub durable_wanted: AtomicU64,
    /// Events resolved (delivered or set aside) in FIFO order, counted from the
    /// first event of the backlog at start (spooled events of earlier processes
    /// included). `flush()` waits on it.
    pub resolved: watch::Sender<u64>,
    pub delivered: AtomicU64,
    /// Events in the spool not yet acknowledged, as last seen by a task that
    /// held the backlog (readable without the backlog lock, which a stalled
    /// disk may hold).
    pub spool_pending: AtomicU64,
    pub rejected: AtomicU64,
    /// FIFO numbers of set-aside events not yet reported by a `flush()`.
    pub rejected_unreported: Mutex<Vec<u64>>,
    /// Events replayed from the spool of an earlier process (FIFO numbers
    /// `1..=replayed`): their duplicates on first send are expected.
    pub replayed: u64,
    pub lost: AtomicU64,
    /// Intake → delivery: events are available.
    pub work: Notify,
    /// Intake → delivery: send now (a batch is full or a flush waits).
    pub urgent: Notify,
    /// Delivery → intake: spool space was freed.
    pub space: Notify,
    /// What the readiness probe last saw (the probe alone writes it).
    pub probe: Mutex<crate::readiness::ProbeState>,
    /// The intake holds events the spool had no room for.
    pub spool_full: AtomicBool,
    /// Stops the background tasks.
    pub stop: CancellationToken,
    /// Unix milliseconds of the last overflow log line (rate limit).
    pub last_drop_log_ms: AtomicU64,
}

impl Shared {
    pub fn new(
        config: AuditConfig,
        backlog: Backlog,
        transport: Box<dyn Transport>,
        replayed: u64,
    ) -> Arc<Self> {
        let tokens = TokenSource::new(config.effective_token_file(), config.token_refresh_interval);
        Arc::new(Self {
            config,
            available: AtomicU64::new(backlog.available()),
            backlog: Mutex::new(backlog),
            transport,
            tokens,
            inbox: Mutex::new(Vec::new()),
            inbox_idle: AtomicBool::new(false),
            inbox_wake: Notify::new(),
            in_memory: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            recorded: AtomicU64::new(replayed),
            durable: watch::Sender::new(replayed),
            durable_wanted: AtomicU64::new(0),
            resolved: watch::Sender::new(0),
            delivered: AtomicU64::new(0),
            spool_pending: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            rejected_unreported: Mutex::new(Vec::new()),
            replayed,
            lost: AtomicU64::new(0),
            work: Notify::new(),
            urgent: Notify::new(),
            space: Notify::new(),
            probe: Mutex::new(crate::readiness::ProbeState::default()),
            spool_full: AtomicBool::new(false),
            stop: CancellationToken::new(),
            last_drop_log_ms: AtomicU64::new(0),
        })
    }

    /// The backlog, for blocking code (see the field's note).
    pub fn backlog(&self) -> BacklogGuard<'_> {
        BacklogGuard {
            guard: self.backlog.lock().unwrap_or_else(|p| p.into_inner()),
            available: &self.available,
        }
    }

    /// Takes the next batch for delivery (blocking code): spooled records
    /// are read under the backlog lock, parsed without it, then counted
    /// under it again.
    pub fn take_batch(&self, max: usize) -> io::Result<Taken> {
        let (raw, mark) = match self.backlog().start_take(max)? {
            Taking::Done(taken) => return Ok(taken),
            Taking::Parse(raw, mark) => (raw, mark),
        };
        let (events, unparseable) = raw.parse();
        let mut backlog = self.backlog();
        let spool = backlog.spool().expect("a spool take ends on the spool");
        spool.count_parsed(events.len(), &unparseable);
        let skipped = spool.take_skipped();
        Ok((events, Some(mark), skipped))
    }

    /// Events in the backlog not yet taken by delivery, without its lock.
    pub fn available(&self) -> u64 {
        self.available.load(Ordering::Acquire)
    }

    /// Counts `n` lost events and logs it, at most once a second per store.
    pub fn lose(&self, reason: &'static str, n: u64, detail: &str) {
        if n == 0 {
            return;
        }
        self.lost.fetch_add(n, Ordering::Relaxed);
        m::dropped(reason, n);
        let now = chrono::Utc::now().timestamp_millis() as u64;
        let last = self.last_drop_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_drop_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                reason,
                lost = n,
                lost_total = self.lost.load(Ordering::Relaxed),
                "AUDIT EVENTS LOST: {detail}"
            );
        }
    }

    /// Notes that the event with FIFO number `seq` was set aside.
    pub fn note_rejected(&self, seq: u64) {
        self.rejected_unreported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(seq);
    }

    /// Takes (reports) the set-aside events numbered up to `target`.
    pub fn take_rejected_upto(&self, target: u64) -> u64 {
        let mut list = self
            .rejected_unreported
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let before = list.len();
        list.retain(|seq| *seq > target);
        (before - list.len()) as u64
    }

    /// Takes every event from the inbox, oldest first, and counts them as
    /// recorded: one metric update per burst instead of a recorder's key
    /// lookup in every `record()`. The producers go on with `spare` (see
    /// [`crate::inbox`]), which is left empty for the intake to refill.
    pub fn drain_inbox(&self, spare: &mut Vec<AuditEvent>) -> Vec<AuditEvent> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.is_empty() {
            return Vec::new();
        }
        let arrived = std::mem::replace(&mut *inbox, std::mem::take(spare));
        drop(inbox);
        metrics::counter!(m::RECORDED).increment(arrived.len() as u64);
        arrived
    }

    /// Gives the producers `buffer` at once when the inbox they fill is
    /// still empty and smaller (after a drain with no spare ready, as the
    /// first one); otherwise hands it back, to be the next drain's spare.
    pub fn offer_inbox(&self, buffer: Vec<AuditEvent>) -> Option<Vec<AuditEvent>> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.is_empty() && inbox.capacity() < buffer.capacity() {
            *inbox = buffer;
            None
        } else {
            Some(buffer)
        }
    }

    pub fn update_gauges(&self) {
        metrics::gauge!(m::QUEUE_DEPTH).set(self.in_memory.load(Ordering::Relaxed) as f64);
    }
}

/// The locked backlog. Releasing it publishes how many events delivery can
/// take, so every change made under the lock is counted without each caller
/// remembering to.
pub(crate) struct BacklogGuard<'a> {
    guard: MutexGuard<'a, Backlog>,
    available: &'a AtomicU64,
}

impl std::ops::Deref for BacklogGuard<'_> {
    type Target = Backlog;
    fn deref(&self) -> &Backlog {
        &self.guard
    }
}

impl std::ops::DerefMut for BacklogGuard<'_> {
    fn deref_mut(&mut self) -> &mut Backlog {
        &mut self.guard
    }
}

impl Drop for BacklogGuard<'_> {
    fn drop(&mut self) {
        self.available
            .store(self.guard.available(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn event(n: usize) -> AuditEvent {
        AuditEvent::builder("gateway.signal.received", format!("rr-{n}"))
            .category("gateway")
            .action("received")
            .build()
    }

    /// The delivery task asks how much is available on an async worker; a
    /// spool write holds the backlog lock through its fsync. Before, the
    /// question took the lock, so that worker (and every task queued on it,
    /// the durable waiters' wake-ups among them) waited for the fsync.
    #[test]
    fn available_is_answered_while_the_backlog_is_locked() {
        let config = AuditConfig::new("http://127.0.0.1:9");
        let transport = crate::transport::build(&config).unwrap();
        let shared = Shared::new(config, Backlog::Memory(Default::default()), transport, 0);
        assert_eq!(shared.available(), 0);
        shared
            .backlog()
            .push(&mut (0..3).map(event).collect())
            .unwrap();
        assert_eq!(shared.available(), 3, "published when the lock is released");

        let held = shared.backlog(); // a write inside its fsync
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| tx.send(shared.available()).unwrap());
            let answer = rx.recv_timeout(Duration::from_secs(10));
            drop(held); // lets a blocked asker finish before the scope ends
            assert_eq!(answer, Ok(3), "available() waited for the backlog lock");
        });
        let taken = shared.take_batch(2).unwrap();
        assert_eq!(taken.0.len(), 2);
        assert_eq!(shared.available(), 1, "a take is published too");
    }
}
