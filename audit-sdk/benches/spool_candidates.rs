//! The spool against the two embedded stores it was chosen against: redb
//! (one write transaction per burst, `Durability::Immediate`) and fjall (one
//! write batch per burst persisted with `PersistMode::SyncData`), used as a
//! queue the way the issue sketches it (events keyed by a monotonic sequence
//! number, a range delete on acknowledgement).
//!
//! Same events (serialised inside the timed loop by every candidate, as the
//! spool does), same burst sizes, same disk (one temp dir), one run:
//! - **append**: events/s when every burst of 1, 16 or 64 events is one
//!   durable commit (one fdatasync), against the floor measured beside it:
//!   the same JSON bytes written with one `write + fdatasync` per burst;
//! - **ack**: events/s reading everything back in delivery batches of 500
//!   and acknowledging each durably (spool: cursor; redb/fjall: delete of
//!   the batch's keys), against the spool;
//! - **recovery**: a child process writes N events in bursts of 64 and is
//!   SIGKILLed; the time to open the store again and know what is pending
//!   (every acknowledged-durable event must come back), against the spool.
//!
//! `cargo bench -p audit-sdk --features spool-candidates --bench spool_candidates [-- COMMITS RECOVERY_EVENTS]`

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use audit_sdk::spool::{Spool, SpoolOptions};
use audit_sdk::{AuditEvent, FsyncPolicy};
use datastorage::testing::bench::{report, sample_events};

/// Events per durable commit.
const BURSTS: [usize; 3] = [1, 16, 64];
/// Events per delivery batch read and acknowledged (the SDK's `batch_size`).
const ACK_BATCH: usize = 500;
/// The environment variable that makes this binary the recovery child.
const CHILD_ENV: &str = "SPOOL_CANDIDATES_CHILD";

const REDB_TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");

/// One store used as the SDK's spool would use it.
trait Candidate: Sized {
    const NAME: &'static str;
    /// Opens (or recovers) the store in `dir`.
    fn open(dir: &Path) -> Self;
    /// Appends `events` as one durable commit.
    fn append(&mut self, events: &[AuditEvent]);
    /// Reads up to `max` of the oldest events and acknowledges them durably;
    /// returns how many.
    fn ack_batch(&mut self, max: usize) -> usize;
    /// Events stored and not acknowledged.
    fn pending(&mut self) -> u64;
}

struct OurSpool(Spool);

impl Candidate for OurSpool {
    const NAME: &'static str = "spool";

    fn open(dir: &Path) -> Self {
        let opts = SpoolOptions {
            dir: dir.to_owned(),
            max_bytes: 64 << 30,
            segment_bytes: 16 << 20,
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
        };
        Self(Spool::open(opts).unwrap().0)
    }

    fn append(&mut self, events: &[AuditEvent]) {
        assert_eq!(self.0.append(events).unwrap(), events.len());
    }

    fn ack_batch(&mut self, max: usize) -> usize {
        let batch = self.0.read_batch(max).unwrap();
        if !batch.is_empty() {
            self.0.ack(batch.len() as u64).unwrap();
        }
        batch.len()
    }

    fn pending(&mut self) -> u64 {
        self.0.pending()
    }
}

struct Redb {
    db: redb::Database,
    next: u64,
}

impl Candidate for Redb {
    const NAME: &'static str = "redb";

    fn open(dir: &Path) -> Self {
        let db = redb::Database::create(dir.join("spool.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(REDB_TABLE).unwrap();
        txn.commit().unwrap();
        let next = {
            use redb::{ReadableDatabase, ReadableTable};
            let read = db.begin_read().unwrap();
            let table = read.open_table(REDB_TABLE).unwrap();
            table.last().unwrap().map_or(0, |(k, _)| k.value() + 1)
        };
        Self { db, next }
    }

    fn append(&mut self, events: &[AuditEvent]) {
        let mut txn = self.db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        {
            let mut table = txn.open_table(REDB_TABLE).unwrap();
            for e in events {
                let bytes = serde_json::to_vec(e).unwrap();
                table.insert(self.next, bytes.as_slice()).unwrap();
                self.next += 1;
            }
        }
        txn.commit().unwrap();
    }

    fn ack_batch(&mut self, max: usize) -> usize {
        use redb::ReadableDatabase;
        let (first, last, n) = {
            let read = self.db.begin_read().unwrap();
            let table = read.open_table(REDB_TABLE).unwrap();
            let mut keys = (None, 0, 0);
            for row in table.range::<u64>(..).unwrap().take(max) {
                let (k, v) = row.unwrap();
                let _: AuditEvent = serde_json::from_slice(v.value()).unwrap();
                keys.0.get_or_insert(k.value());
                keys.1 = k.value();
                keys.2 += 1;
            }
            keys
        };
        let Some(first) = first else { return 0 };
        let mut txn = self.db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        {
            let mut table = txn.open_table(REDB_TABLE).unwrap();
            table.retain_in(first..=last, |_, _| false).unwrap();
        }
        txn.commit().unwrap();
        n
    }

    fn pending(&mut self) -> u64 {
        use redb::{ReadableDatabase, ReadableTableMetadata};
        let read = self.db.begin_read().unwrap();
        read.open_table(REDB_TABLE).unwrap().len().unwrap()
    }
}

struct Fjall {
    db: fjall::Database,
    events: fjall::Keyspace,
    next: u64,
}

impl Candidate for Fjall {
    const NAME: &'static str = "fjall";

    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
        let events = db
            .keyspace("events", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let next = events.last_key_value().map_or(0, |g| {
            u64::from_be_bytes(g.key().unwrap().as_ref().try_into().unwrap()) + 1
        });
        Self { db, events, next }
    }

    fn append(&mut self, events: &[AuditEvent]) {
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        for e in events {
            let bytes = serde_json::to_vec(e).unwrap();
            batch.insert(&self.events, self.next.to_be_bytes(), bytes);
            self.next += 1;
        }
        batch.commit().unwrap();
    }

    fn ack_batch(&mut self, max: usize) -> usize {
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        let mut n = 0;
        for row in self.events.iter().take(max) {
            let (k, v) = row.into_inner().unwrap();
            let _: AuditEvent = serde_json::from_slice(&v).unwrap();
            batch.remove(&self.events, k);
            n += 1;
        }
        batch.commit().unwrap();
        n
    }

    fn pending(&mut self) -> u64 {
        self.events.len().unwrap() as u64
    }
}

/// The floor: the same JSON bytes, one `write + fdatasync` per burst.
fn raw(dir: &Path, events: &[AuditEvent], burst: usize) -> f64 {
    let mut file = std::fs::File::create(dir.join("raw")).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    for chunk in events.chunks(burst) {
        buf.clear();
        for e in chunk {
            serde_json::to_writer(&mut buf, e).unwrap();
        }
        file.write_all(&buf).unwrap();
        file.sync_data().unwrap();
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

/// What one candidate measured.
#[derive(Debug, Default)]
struct Figures {
    /// Append events/s per burst size.
    append: Vec<f64>,
    /// Disk bytes per stored event after the appends.
    bytes_per_event: f64,
    /// Ack events/s.
    ack: f64,
    /// Seconds to reopen after SIGKILL.
    recovery: f64,
}

fn measure<C: Candidate>(
    root: &Path,
    events: &[AuditEvent],
    commits: usize,
    recovery_events: usize,
) -> Figures {
    let dir = root.join(C::NAME);
    std::fs::create_dir_all(&dir).unwrap();
    let mut store = C::open(&dir);
    let mut figures = Figures::default();
    let mut stored = 0;
    for burst in BURSTS {
        let chunk = &events[..burst * commits];
        let started = Instant::now();
        for b in chunk.chunks(burst) {
            store.append(b);
        }
        figures
            .append
            .push(chunk.len() as f64 / started.elapsed().as_secs_f64());
        stored += chunk.len() as u64;
    }
    assert_eq!(store.pending(), stored, "{} keeps every event", C::NAME);
    figures.bytes_per_event = dir_bytes(&dir) as f64 / stored as f64;
    let started = Instant::now();
    let mut acked = 0;
    loop {
        let n = store.ack_batch(ACK_BATCH);
        if n == 0 {
            break;
        }
        acked += n as u64;
    }
    figures.ack = acked as f64 / started.elapsed().as_secs_f64();
    assert_eq!(acked, stored);
    assert_eq!(store.pending(), 0, "{} acknowledged everything", C::NAME);
    drop(store);
    figures.recovery = recovery::<C>(root, recovery_events);
    figures
}

/// Seconds for `C` to reopen and count what is pending after a child
/// process wrote `n` events in bursts of 64 and was SIGKILLed.
fn recovery<C: Candidate>(root: &Path, n: usize) -> f64 {
    let dir = root.join(format!("{}-recovery", C::NAME));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, format!("{}:{n}:{}", C::NAME, dir.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "written", "the recovery child of {}", C::NAME);
    child.kill().unwrap();
    child.wait().unwrap();
    let started = Instant::now();
    let mut store = C::open(&dir);
    let pending = store.pending();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        pending,
        n as u64,
        "{} recovers every durable event",
        C::NAME
    );
    took
}

/// The recovery child: writes, says so, and waits for its SIGKILL.
fn child(spec: &str) -> ! {
    let mut parts = spec.splitn(3, ':');
    let (name, n, dir) = (
        parts.next().unwrap(),
        parts.next().unwrap().parse::<usize>().unwrap(),
        PathBuf::from(parts.next().unwrap()),
    );
    let events = sample_events(n, "rr-recovery", 100);
    fn write<C: Candidate>(dir: &Path, events: &[AuditEvent]) -> C {
        let mut store = C::open(dir);
        for b in events.chunks(64) {
            store.append(b);
        }
        store
    }
    // Kept open (never dropped): the parent's SIGKILL is the only end.
    let _open: Box<dyn std::any::Any> = match name {
        OurSpool::NAME => Box::new(write::<OurSpool>(&dir, &events).0),
        Redb::NAME => Box::new(write::<Redb>(&dir, &events).db),
        Fjall::NAME => Box::new(write::<Fjall>(&dir, &events).db),
        other => panic!("unknown candidate {other}"),
    };
    println!("written");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::park();
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
    }
    let mut args = std::env::args().filter_map(|a| a.parse::<usize>().ok());
    let commits = args.next().unwrap_or(300);
    let recovery_events = args.next().unwrap_or(20_000);
    let events = sample_events(commits * BURSTS[BURSTS.len() - 1], "rr-candidates", 100);
    let root = tempfile::tempdir().unwrap();

    let floor: Vec<f64> = BURSTS
        .iter()
        .map(|b| raw(root.path(), &events[..b * commits], *b))
        .collect();
    let spool = measure::<OurSpool>(root.path(), &events, commits, recovery_events);
    let redb = measure::<Redb>(root.path(), &events, commits, recovery_events);
    let fjall = measure::<Fjall>(root.path(), &events, commits, recovery_events);

    println!(
        "spool candidates: {commits} durable commits per burst size, ack in batches of {ACK_BATCH}, recovery after SIGKILL with {recovery_events} events"
    );
    println!(
        "{:<8} {:>8} {:>12} {:>10} {:>10}",
        "store", "measure", "value", "vs floor", "vs spool"
    );
    for (i, burst) in BURSTS.iter().enumerate() {
        let m = format!("append x{burst}");
        println!(
            "{:<8} {:>8} {:>12.0} {:>10.2} {:>10}",
            "floor", m, floor[i], 1.0, ""
        );
        for (name, f) in [("spool", &spool), ("redb", &redb), ("fjall", &fjall)] {
            println!(
                "{:<8} {:>8} {:>12.0} {:>10.2} {:>10.2}",
                name,
                m,
                f.append[i],
                f.append[i] / floor[i],
                f.append[i] / spool.append[i]
            );
            report(
                "audit-sdk spool candidates",
                &format!("{name} append x{burst}"),
                f.append[i],
                "events/s",
                Some((&format!("write+fdatasync per {burst}"), floor[i])),
            );
        }
    }
    for (name, f) in [("spool", &spool), ("redb", &redb), ("fjall", &fjall)] {
        println!(
            "{:<8} {:>8} {:>12.0} {:>10} {:>10.2}",
            name,
            "ack",
            f.ack,
            "",
            f.ack / spool.ack
        );
        println!(
            "{:<8} {:>8} {:>10.1}ms {:>10} {:>10.2}",
            name,
            "recovery",
            f.recovery * 1e3,
            "",
            f.recovery / spool.recovery
        );
        println!(
            "{:<8} {:>8} {:>10.0}B {:>10} {:>10.2}",
            name,
            "disk/evt",
            f.bytes_per_event,
            "",
            f.bytes_per_event / spool.bytes_per_event
        );
        report(
            "audit-sdk spool candidates",
            &format!("{name} ack"),
            f.ack,
            "events/s",
            Some(("spool ack", spool.ack)),
        );
        report(
            "audit-sdk spool candidates",
            &format!("{name} recovery"),
            f.recovery * 1e3,
            "ms",
            Some(("spool recovery", spool.recovery * 1e3)),
        );
        report(
            "audit-sdk spool candidates",
            &format!("{name} disk per event"),
            f.bytes_per_event,
            "B",
            Some(("spool disk per event", spool.bytes_per_event)),
        );
    }
}
