//! A spool read failing in the middle of a batch (EIO from a dying disk or
//! a network volume): the records read before the failure are delivered
//! with that batch, the next read starts at the failing record, and every
//! event comes back exactly once, in order. Before, the error dropped the
//! records already read while the read position stayed past them: their
//! events were never delivered nor counted lost.

#[allow(dead_code)] // these tests use the aimed faults only
mod faulty_io;

use std::sync::Arc;

use audit_sdk::spool::Spool;
use audit_sdk::AuditEvent;
use faulty_io::{gateway_events, spool_options, Aimed, FaultyIo};

/// About 600 KB of records: the spool's 256 KiB read buffer is filled two or
/// three times per full read, so the second fill is mid-batch.
const EVENTS: usize = 1_000;

#[test]
fn a_read_failing_mid_batch_loses_none_of_the_records_read_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::default();
    let (mut spool, _) = Spool::open_with(
        spool_options(dir.path(), 64 << 20, 16 << 20),
        Arc::new(io.clone()),
    )
    .unwrap();
    let written = gateway_events(EVENTS);
    assert_eq!(spool.append(&written).unwrap(), EVENTS);

    // The first read fills the buffer; the second fails.
    io.aim("read", 2, Aimed::Fail);
    let mut back = Vec::new();
    let mut errors = 0;
    let mut reads = 0;
    let mut first_batch = None;
    while back.len() < EVENTS && reads < 10 {
        reads += 1;
        match spool.read_batch(EVENTS) {
            Ok(batch) => {
                first_batch.get_or_insert(batch.len());
                back.extend(batch);
            }
            Err(_) => errors += 1,
        }
    }
    println!(
        "{} events back in {reads} reads ({errors} errors; the first batch {first_batch:?}), faults fired: {:?}",
        back.len(),
        io.fired()
    );
    assert!(io.fired().contains(&("fail", "read")), "the fault fired");
    // The case under test: the failure came after part of the batch.
    assert!(
        first_batch.is_some_and(|n| n > 0 && n < EVENTS),
        "the first read ended at the failure mid-batch: {first_batch:?}"
    );
    let ids = |v: &[AuditEvent]| v.iter().map(|e| e.event_id).collect::<Vec<_>>();
    assert_eq!(ids(&back), ids(&written), "every event once, in order");
    assert_eq!(spool.take_skipped(), 0, "nothing was damaged");
    assert_eq!(spool.unread(), 0);
}
