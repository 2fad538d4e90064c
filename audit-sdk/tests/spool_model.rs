//! Model-based property tests of the spool: random sequences of append /
//! read / ack / crash+reopen against an in-memory model.
//!
//! Three kinds of fault:
//! - damage applied to the files between a crash and the reopen (a flipped
//!   bit in record i, a zero-filled tail, a torn last record cut at byte k):
//!   what a power loss or a bad disk leaves;
//! - faults inside the spool's own writes, through the `SpoolIo` seam
//!   (`faulty_io`): ENOSPC at the N-th write, a write torn at byte k, a
//!   crash after any write (every later call fails; the files hold what was
//!   written so far);
//! - a read failing with EIO at the k-th read call from now, the disk
//!   staying alive: the records read before it in that batch must still be
//!   handed out, and the next read must start at the failing record.
//!
//! After every recovery it checks: no acknowledged event comes back, every
//! other event comes back exactly once and in order, and every event that
//! does not come back is counted as lost, in events (`Recovery::lost_events`
//! plus what reads skip). Events of an append that returned an error are not
//! durable: they may come back (exactly once) or not, uncounted; so may the
//! events of an acknowledgement that returned an error (its cursor may not
//! have reached the disk).

#[allow(dead_code)] // the stall serves the faulty_io_* tests
mod faulty_io;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use audit_sdk::config::FsyncPolicy;
use audit_sdk::event::AuditEvent;
use audit_sdk::spool::record::{self, Decoded};
use audit_sdk::spool::{Position, Spool, SpoolOptions};
use faulty_io::{Aimed, FaultyIo, Plan};
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
    /// Arms a fault inside the spool's writes (write-fault runs only).
    Arm(Plan),
    /// The k-th read call from now fails with EIO (one-shot).
    FailRead(u64),
}

fn op(write_faults: bool) -> impl Strategy<Value = Op> {
    let arm = if write_faults { 3 } else { 0 };
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
        1 => (1u64..4).prop_map(Op::FailRead),
        arm => prop_oneof![
            (1u64..8).prop_map(|at| Plan::Enospc { at }),
            (1u64..8, 0usize..600).prop_map(|(at, keep)| Plan::Torn { at, keep }),
            (1u64..8).prop_map(|at| Plan::CrashAfter { at }),
        ]
        .prop_map(Op::Arm),
    ]
}

thread_local! {
    // Per test thread: the two tests run at the same time.
    static CRASHES: AtomicU64 = const { AtomicU64::new(0) };
    static FLIPS: AtomicU64 = const { AtomicU64::new(0) };
    static ZERO_TAILS: AtomicU64 = const { AtomicU64::new(0) };
    static TORN: AtomicU64 = const { AtomicU64::new(0) };
    static LOST: AtomicU64 = const { AtomicU64::new(0) };
    static EVENTS: AtomicU64 = const { AtomicU64::new(0) };
    static WRITE_FAULTS: AtomicU64 = const { AtomicU64::new(0) };
    static FAILED_APPENDS: AtomicU64 = const { AtomicU64::new(0) };
    static READ_FAULTS: AtomicU64 = const { AtomicU64::new(0) };
    static FAILED_READS: AtomicU64 = const { AtomicU64::new(0) };
    static FIRED: RefCell<BTreeSet<(&'static str, &'static str)>> = const { RefCell::new(BTreeSet::new()) };
}

fn opts(dir: &Path, fsync: FsyncPolicy) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_owned(),
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 2048,
        fsync,
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
            FLIPS.with(|c| c.fetch_add(1, Ordering::Relaxed));
        }
        Fault::ZeroTail { bytes } => {
            if let Some(seg) = segments(dir).last() {
                let mut data = fs::read(seg).unwrap();
                data.extend(std::iter::repeat_n(0u8, *bytes));
                fs::write(seg, data).unwrap();
                ZERO_TAILS.with(|c| c.fetch_add(1, Ordering::Relaxed));
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
            TORN.with(|c| c.fetch_add(1, Ordering::Relaxed));
        }
    }
}

struct Model {
    /// Events written and not acknowledged, oldest first.
    live: Vec<String>,
    /// Read batches not yet acknowledged: (events, skipped, end).
    in_flight: Vec<(Vec<String>, u64, Position)>,
    acked: HashSet<String>,
    /// Acknowledged with an error: may come back once (before `live`).
    unsure_acked: Vec<String>,
    /// Of an append that returned an error: may come back once (after `live`).
    unsure_appended: Vec<String>,
    next: u64,
}

/// Checks a recovery against the model and makes the model match it.
fn recover(
    m: &mut Model,
    spool: &mut Spool,
    rec: audit_sdk::spool::Recovery,
    fault: &Fault,
) -> Result<(), TestCaseError> {
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
    LOST.with(|c| c.fetch_add(lost, Ordering::Relaxed));
    let mut seen = HashSet::new();
    for e in &back {
        prop_assert!(seen.insert(e.clone()), "{} came back twice", e);
        prop_assert!(!m.acked.contains(e), "acknowledged {} came back", e);
    }
    // In order, a subsequence of the unacknowledged events...
    let order: Vec<&String> = m
        .unsure_acked
        .iter()
        .chain(&m.live)
        .chain(&m.unsure_appended)
        .collect();
    let mut it = order.iter();
    for e in &back {
        prop_assert!(it.any(|l| *l == e), "{} out of order or unknown", e);
    }
    // ...and every missing one counted, in events: exactly, or, with
    // events that need not have survived, between the sure and the
    // possible losses.
    let missing = |evs: &[String]| evs.iter().filter(|e| !seen.contains(*e)).count() as u64;
    let sure = missing(&m.live);
    let unsure = missing(&m.unsure_acked) + missing(&m.unsure_appended);
    prop_assert!(
        sure <= lost && lost <= sure + unsure,
        "losses counted in events: {} lost, {} counted, {} more may be ({:?}, fault {:?})",
        sure,
        lost,
        unsure,
        rec,
        fault
    );
    prop_assert_eq!(rec.pending, back.len() as u64);
    prop_assert_eq!(spool.unread(), 0);
    for e in &m.unsure_acked {
        if !seen.contains(e) {
            m.acked.insert(e.clone());
        }
    }
    m.unsure_acked.clear();
    m.unsure_appended.clear();
    if !back.is_empty() {
        m.in_flight.push((back.clone(), 0, spool.read_position()));
    }
    m.live = back;
    Ok(())
}

fn run(ops: Vec<Op>, fsync: FsyncPolicy) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut io = FaultyIo::default();
    let (mut spool, _) = Spool::open_with(opts(dir.path(), fsync), Arc::new(io.clone())).unwrap();
    let mut m = Model {
        live: Vec::new(),
        in_flight: Vec::new(),
        acked: HashSet::new(),
        unsure_acked: Vec::new(),
        unsure_appended: Vec::new(),
        next: 0,
    };
    for op in ops {
        match op {
            Op::Append(n) => {
                let evs: Vec<AuditEvent> = (0..n as u64).map(|i| event(m.next + i)).collect();
                m.next += n as u64;
                EVENTS.with(|c| c.fetch_add(n as u64, Ordering::Relaxed));
                let mut result = spool.append(&evs);
                if result.is_err() && !io.crashed() {
                    // What the intake does: keep the events, append them again.
                    FAILED_APPENDS.with(|c| c.fetch_add(1, Ordering::Relaxed));
                    result = spool.append(&evs);
                }
                match result {
                    Ok(written) => {
                        prop_assert_eq!(written, n);
                        m.live.extend(evs.iter().map(id));
                    }
                    Err(_) => {
                        FAILED_APPENDS.with(|c| c.fetch_add(1, Ordering::Relaxed));
                        prop_assert!(
                            io.crashed(),
                            "only a crash fails an append twice: {:?}",
                            result
                        );
                        m.unsure_appended.extend(evs.iter().map(id));
                    }
                }
            }
            Op::Read(n) => {
                let Ok(batch) = spool.read_batch(n) else {
                    FAILED_READS.with(|c| c.fetch_add(1, Ordering::Relaxed));
                    prop_assert!(
                        io.crashed() || io.fired().contains(&("fail", "read")),
                        "reads fail only after a crash or an aimed read fault"
                    );
                    continue;
                };
                let batch: Vec<String> = batch.iter().map(id).collect();
                let skipped = spool.take_skipped();
                prop_assert_eq!(skipped, 0, "no damage between crashes");
                if !batch.is_empty() {
                    let done: usize = m.in_flight.iter().map(|b| b.0.len()).sum();
                    prop_assert_eq!(&m.live[done..done + batch.len()], &batch[..]);
                    m.in_flight.push((batch, skipped, spool.read_position()));
                }
            }
            Op::Ack => {
                if !m.in_flight.is_empty() && !io.crashed() {
                    let (batch, skipped, end) = m.in_flight.remove(0);
                    let ok = spool.ack_to(end, batch.len() as u64 + skipped).is_ok();
                    m.live.drain(..batch.len());
                    if ok {
                        // The cursor on disk is past every earlier batch too.
                        m.acked.extend(m.unsure_acked.drain(..));
                        m.acked.extend(batch);
                    } else {
                        m.unsure_acked.extend(batch);
                    }
                }
            }
            Op::FailRead(nth) => {
                READ_FAULTS.with(|c| c.fetch_add(1, Ordering::Relaxed));
                io.aim("read", nth, Aimed::Fail);
                continue;
            }
            Op::Arm(plan) => {
                WRITE_FAULTS.with(|c| c.fetch_add(1, Ordering::Relaxed));
                io.arm(plan);
                continue;
            }
            Op::Crash(fault) => {
                drop(spool);
                CRASHES.with(|c| c.fetch_add(1, Ordering::Relaxed));
                FIRED.with(|f| f.borrow_mut().extend(io.fired()));
                apply(dir.path(), &fault);
                io = FaultyIo::default();
                let (reopened, rec) =
                    Spool::open_with(opts(dir.path(), fsync), Arc::new(io.clone())).unwrap();
                spool = reopened;
                recover(&mut m, &mut spool, rec, &fault)?;
                continue;
            }
        }
        if io.crashed() {
            // The process died inside that operation: restart it.
            drop(spool);
            CRASHES.with(|c| c.fetch_add(1, Ordering::Relaxed));
            FIRED.with(|f| f.borrow_mut().extend(io.fired()));
            io = FaultyIo::default();
            let (reopened, rec) =
                Spool::open_with(opts(dir.path(), fsync), Arc::new(io.clone())).unwrap();
            spool = reopened;
            recover(&mut m, &mut spool, rec, &Fault::None)?;
        }
    }
    FIRED.with(|f| f.borrow_mut().extend(io.fired()));
    Ok(())
}

fn check(name: &str, seed: u64, write_faults: bool, fsync: FsyncPolicy) {
    let cases = 256;
    // A fixed seed: the same cases in every run, so CI is repeatable.
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(write_faults), 1..40), |ops| {
            run(ops, fsync)
        })
        .unwrap();
    let fired = FIRED.with(|f| f.borrow().clone());
    println!(
        "{name}: {cases} cases, {} events, {} crashes+reopens, faults: {} flipped bits, {} zero tails, {} torn last records, {} write faults armed ({} failed appends), {} read faults aimed ({} failed reads); {} distinct fault points fired {:?}; {} events lost, all counted",
        EVENTS.with(|c| c.load(Ordering::Relaxed)),
        CRASHES.with(|c| c.load(Ordering::Relaxed)),
        FLIPS.with(|c| c.load(Ordering::Relaxed)),
        ZERO_TAILS.with(|c| c.load(Ordering::Relaxed)),
        TORN.with(|c| c.load(Ordering::Relaxed)),
        WRITE_FAULTS.with(|c| c.load(Ordering::Relaxed)),
        FAILED_APPENDS.with(|c| c.load(Ordering::Relaxed)),
        READ_FAULTS.with(|c| c.load(Ordering::Relaxed)),
        FAILED_READS.with(|c| c.load(Ordering::Relaxed)),
        fired.len(),
        fired,
        LOST.with(|c| c.load(Ordering::Relaxed)),
    );
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
    check(
        "spool model (damage between crashes)",
        0x5eed_0012,
        false,
        FsyncPolicy::Never,
    );
}

#[test]
fn the_spool_matches_its_model_through_faults_inside_its_writes() {
    // fsync always: the fsyncs and directory syncs are write points too.
    check(
        "spool model (faults inside writes)",
        0x5eed_0013,
        true,
        FsyncPolicy::Always,
    );
}
