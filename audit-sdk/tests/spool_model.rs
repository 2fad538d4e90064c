//! Model-based property test of the spool: random sequences of append /
//! read / ack / crash+reopen against an in-memory model, with a fault applied
//! to the files at each crash (a flipped bit in record i, a zero-filled tail,
//! a torn last record cut at byte k). After every recovery it checks: no
//! acknowledged event comes back, every other event comes back exactly once
//! and in order, and every event that does not come back is counted as lost
//! (in events: `Recovery::lost_events` plus what reads skip).
//!
//! What it does not model: faults inside a write call (ENOSPC at the N-th
//! write, a crash between two `write`s of one batch); those need an I/O seam
//! the spool does not have yet. Faults are applied to the files between a
//! crash and the reopen, which is what such faults leave on disk.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use audit_sdk::config::FsyncPolicy;
use audit_sdk::event::AuditEvent;
use audit_sdk::spool::record::{self, Decoded};
use audit_sdk::spool::{Position, Spool, SpoolOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Debug, Clone)]
enum Fault {
    None,
    /// Flip bit `bit` of record `record` (modulo the records on disk).
    FlipBit {
        record: usize,
        bit: usize,
    },
    /// Zeros appended to the newest segment (a crash after the file grew).
    ZeroTail {
        bytes: usize,
    },
    /// The newest segment's last record torn `k` bytes before its end.
    TornLast {
        k: usize,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Read(usize),
    Ack,
    Crash(Fault),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..8).prop_map(Op::Append),
        3 => (1usize..10).prop_map(Op::Read),
        2 => Just(Op::Ack),
        2 => prop_oneof![
            Just(Fault::None),
            (any::<usize>(), any::<usize>()).prop_map(|(record, bit)| Fault::FlipBit { record, bit }),
            (1usize..200).prop_map(|bytes| Fault::ZeroTail { bytes }),
            (1usize..40).prop_map(|k| Fault::TornLast { k }),
        ]
        .prop_map(Op::Crash),
    ]
}

static CRASHES: AtomicU64 = AtomicU64::new(0);
static FLIPS: AtomicU64 = AtomicU64::new(0);
static ZERO_TAILS: AtomicU64 = AtomicU64::new(0);
static TORN: AtomicU64 = AtomicU64::new(0);
static LOST: AtomicU64 = AtomicU64::new(0);
static EVENTS: AtomicU64 = AtomicU64::new(0);

fn opts(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_owned(),
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 2048,
        fsync: FsyncPolicy::Never,
        fsync_interval: Duration::from_secs(1),
    }
}

fn event(n: u64) -> AuditEvent {
    AuditEvent::builder("t.e", "c")
        .category("c")
        .action("a")
        .actor("s", "s")
        .resource("r", format!("r{n}"))
        .build()
}

fn id(e: &AuditEvent) -> String {
    serde_json::to_value(e).unwrap()["resource"]["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| serde_json::to_string(e).unwrap())
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

/// (segment, offset, length) of every valid record on disk.
fn records(dir: &Path) -> Vec<(PathBuf, usize, usize)> {
    let mut out = Vec::new();
    for seg in segments(dir) {
        let bytes = fs::read(&seg).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            match record::decode(&bytes[at..]) {
                Decoded::Valid { payload, .. } => {
                    let len = record::HEADER as usize + payload.len();
                    out.push((seg.clone(), at, len));
                    at += len;
                }
                Decoded::Damaged => match record::resync(&bytes[at..]) {
                    Some(k) => at += k,
                    None => break,
                },
            }
        }
    }
    out
}

/// Applies the fault to the files of a crashed spool.
fn apply(dir: &Path, fault: &Fault) {
    match fault {
        Fault::None => {}
        Fault::FlipBit { record, bit } => {
            let recs = records(dir);
            if recs.is_empty() {
                return;
            }
            let (seg, at, len) = &recs[record % recs.len()];
            let mut bytes = fs::read(seg).unwrap();
            let b = bit % (len * 8);
            bytes[at + b / 8] ^= 1 << (b % 8);
            fs::write(seg, bytes).unwrap();
            FLIPS.fetch_add(1, Ordering::Relaxed);
        }
        Fault::ZeroTail { bytes } => {
            if let Some(seg) = segments(dir).last() {
                let mut data = fs::read(seg).unwrap();
                data.extend(std::iter::repeat_n(0u8, *bytes));
                fs::write(seg, data).unwrap();
                ZERO_TAILS.fetch_add(1, Ordering::Relaxed);
            }
        }
        Fault::TornLast { k } => {
            let Some(seg) = segments(dir).last().cloned() else {
                return;
            };
            let recs = records(dir);
            let Some((_, at, len)) = recs.iter().rfind(|(s, _, _)| *s == seg) else {
                return;
            };
            let file_len = fs::metadata(&seg).unwrap().len() as usize;
            if at + len != file_len {
                return; // damage after it already: not a torn last record
            }
            let cut = at + len - (k % len).max(1);
            fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(cut as u64)
                .unwrap();
            TORN.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Model {
    /// Events written and not acknowledged, oldest first.
    live: Vec<String>,
    /// Read batches not yet acknowledged: (events, skipped, end).
    in_flight: Vec<(Vec<String>, u64, Position)>,
    acked: HashSet<String>,
    next: u64,
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
    let mut m = Model {
        live: Vec::new(),
        in_flight: Vec::new(),
        acked: HashSet::new(),
        next: 0,
    };
    for op in ops {
        match op {
            Op::Append(n) => {
                let evs: Vec<AuditEvent> = (0..n as u64).map(|i| event(m.next + i)).collect();
                m.next += n as u64;
                EVENTS.fetch_add(n as u64, Ordering::Relaxed);
                prop_assert_eq!(spool.append(&evs).unwrap(), n);
                m.live.extend(evs.iter().map(id));
            }
            Op::Read(n) => {
                let batch: Vec<String> = spool.read_batch(n).unwrap().iter().map(id).collect();
                let skipped = spool.take_skipped();
                prop_assert_eq!(skipped, 0, "no damage between crashes");
                if !batch.is_empty() {
                    let done: usize = m.in_flight.iter().map(|b| b.0.len()).sum();
                    prop_assert_eq!(&m.live[done..done + batch.len()], &batch[..]);
                    m.in_flight.push((batch, skipped, spool.read_position()));
                }
            }
            Op::Ack => {
                if !m.in_flight.is_empty() {
                    let (batch, skipped, end) = m.in_flight.remove(0);
                    spool.ack_to(end, batch.len() as u64 + skipped).unwrap();
                    m.live.drain(..batch.len());
                    m.acked.extend(batch);
                }
            }
            Op::Crash(fault) => {
                drop(spool);
                CRASHES.fetch_add(1, Ordering::Relaxed);
                apply(dir.path(), &fault);
                let (reopened, rec) = Spool::open(opts(dir.path())).unwrap();
                spool = reopened;
                m.in_flight.clear();
                // Everything comes back now: check it against the model.
                let back: Vec<String> = spool
                    .read_batch(usize::MAX)
                    .unwrap()
                    .iter()
                    .map(id)
                    .collect();
                let skipped = spool.take_skipped();
                let lost = rec.lost_events + skipped;
                LOST.fetch_add(lost, Ordering::Relaxed);
                let mut seen = HashSet::new();
                for e in &back {
                    prop_assert!(seen.insert(e.clone()), "{} came back twice", e);
                    prop_assert!(!m.acked.contains(e), "acknowledged {} came back", e);
                }
                // In order, a subsequence of the unacknowledged events...
                let mut it = m.live.iter();
                for e in &back {
                    prop_assert!(it.any(|l| l == e), "{} out of order or unknown", e);
                }
                // ...and every missing one counted, in events.
                prop_assert_eq!(
                    m.live.len() as u64 - back.len() as u64,
                    lost,
                    "losses counted in events ({:?}, fault {:?})",
                    rec,
                    fault
                );
                prop_assert_eq!(rec.pending, back.len() as u64);
                prop_assert_eq!(spool.unread(), 0);
                if !back.is_empty() {
                    m.in_flight.push((back.clone(), 0, spool.read_position()));
                }
                m.live = back;
            }
        }
    }
    Ok(())
}

// It found (seed 0x5eed_0012) a loss undercount across repeated crashes:
// a damaged tail was counted only in the newest segment, so once the newest
// segment was cut to nothing the sealed segment's damaged last record had no
// later record to measure its gap from (Append(6), FlipBit, TornLast,
// FlipBit counted 0 where 1 was lost); and a tail that began with a record
// counted on an earlier open was counted as that old loss. The unit test
// `a_damaged_last_record_of_a_sealed_segment_is_counted_when_nothing_follows_it`
// pins the first; this test the rest.
#[test]
fn the_spool_matches_its_model_through_crashes_and_damage() {
    let cases = 256;
    // A fixed seed: the same 256 cases in every run, so CI is repeatable.
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0012),
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..40), run)
        .unwrap();
    println!(
        "spool model: {cases} cases, {} events, {} crashes+reopens, faults: {} flipped bits, {} zero tails, {} torn last records; {} events lost, all counted",
        EVENTS.load(Ordering::Relaxed),
        CRASHES.load(Ordering::Relaxed),
        FLIPS.load(Ordering::Relaxed),
        ZERO_TAILS.load(Ordering::Relaxed),
        TORN.load(Ordering::Relaxed),
        LOST.load(Ordering::Relaxed),
    );
}
