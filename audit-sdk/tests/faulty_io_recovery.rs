//! Faults during `Spool::open` (recovery): a read of a segment, the cursor
//! write that records a counted loss, or the cut of a damaged tail failing.
//! Each stops the open with an error (the store does not start) and leaves
//! the damage on disk for the next open, which counts the loss: none loses
//! an event silently, and a loss is counted exactly once across the opens.

#[allow(dead_code)] // these tests use the aimed faults only
mod faulty_io;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_sdk::spool::{Spool, SpoolOptions};
use audit_sdk::AuditEvent;
use faulty_io::{gateway_events, spool_options, Aimed, FaultyIo};

const EVENTS: usize = 5;

fn opts(dir: &Path) -> SpoolOptions {
    spool_options(dir, 1 << 20, 64 << 10)
}

fn events(n: usize) -> Vec<AuditEvent> {
    gateway_events(n)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

/// A spool holding `EVENTS` events whose segment ends in a torn record (a
/// crash mid-append: bytes that are not a record). Returns the segment and
/// its valid length.
fn spool_with_torn_tail(dir: &Path) -> (Vec<AuditEvent>, PathBuf, u64) {
    let written = events(EVENTS);
    {
        let (mut spool, _) = Spool::open(opts(dir)).unwrap();
        assert_eq!(spool.append(&written).unwrap(), EVENTS);
    }
    let seg = segments(dir).pop().expect("one segment");
    let valid = std::fs::metadata(&seg).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(b"\xa5torn record: the process died in this write")
        .unwrap();
    (written, seg, valid)
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn a_cursor_write_failing_at_open_is_an_error_and_the_next_open_counts_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (written, seg, valid) = spool_with_torn_tail(dir.path());
    let torn = len(&seg);

    let io = FaultyIo::default();
    io.aim("write_cursor", 1, Aimed::Fail);
    let err = Spool::open_with(opts(dir.path()), Arc::new(io.clone())).unwrap_err();
    println!(
        "open with the cursor write failing: {err}; fired {:?}",
        io.fired()
    );
    assert!(io.fired().contains(&("fail", "write_cursor")));
    // The tail is cut only after the cursor has counted its loss: it is
    // still there for the next open to count.
    assert_eq!(len(&seg), torn, "nothing cut before the loss was recorded");

    let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
    println!("next open: {rec:?}");
    assert_eq!(rec.lost_events, 1, "the torn record is counted");
    assert_eq!(rec.pending, EVENTS as u64);
    assert_eq!(len(&seg), valid, "and cut off");
    assert_eq!(
        spool.read_batch(100).unwrap(),
        written,
        "the others come back"
    );
}

#[test]
fn a_tail_cut_failing_at_open_is_an_error_and_the_next_open_counts_the_loss_once() {
    let dir = tempfile::tempdir().unwrap();
    let (written, seg, valid) = spool_with_torn_tail(dir.path());
    let torn = len(&seg);

    let io = FaultyIo::default();
    io.aim("set_len", 1, Aimed::Fail);
    let err = Spool::open_with(opts(dir.path()), Arc::new(io.clone())).unwrap_err();
    println!(
        "open with the tail cut failing: {err}; fired {:?}",
        io.fired()
    );
    assert!(io.fired().contains(&("fail", "set_len")));
    assert_eq!(len(&seg), torn, "the tail is still on disk");

    // The failed open recorded the torn record as counted in the cursor but
    // reported it nowhere (it returned an error): the next open must still
    // count one event lost, or the loss would be silent.
    let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
    println!("next open: {rec:?}");
    assert_eq!(rec.lost_events, 1, "counted by the open that succeeds");
    assert_eq!(rec.pending, EVENTS as u64);
    assert_eq!(len(&seg), valid, "cut off now");
    assert_eq!(spool.read_batch(100).unwrap(), written);
    // New records never reuse a number counted lost.
    let more = events(2);
    assert_eq!(spool.append(&more).unwrap(), 2);
    drop(spool);

    let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
    println!("third open: {rec:?}");
    assert_eq!(rec.lost_events, 0, "counted once across the opens");
    let mut back = spool.read_batch(100).unwrap();
    assert_eq!(back.split_off(EVENTS), more);
    assert_eq!(back, written);
}

#[test]
fn a_recovery_read_failing_at_open_is_an_error_not_a_skipped_segment() {
    let dir = tempfile::tempdir().unwrap();
    let written = events(EVENTS);
    {
        let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(spool.append(&written).unwrap(), EVENTS);
    }
    for op in ["open_read", "read"] {
        let io = FaultyIo::default();
        io.aim(op, 1, Aimed::Fail);
        let err = Spool::open_with(opts(dir.path()), Arc::new(io.clone())).unwrap_err();
        println!("open with {op} failing: {err}");
        assert!(io.fired().contains(&("fail", op)), "{op} fired");
    }
    let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
    assert_eq!((rec.pending, rec.lost_events), (EVENTS as u64, 0));
    assert_eq!(spool.read_batch(100).unwrap(), written);
}
