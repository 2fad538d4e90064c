//! `record()` does not fault memory in on the caller's thread: the vector a
//! burst is pushed into was faulted in beforehand, on the blocking pool.
//!
//! A fresh vector of thousands of events is fresh memory from the kernel; a
//! producer filling it took a page fault every nine events or so, which on a
//! VM was a third to a half of `record()`'s time. Counted with the calling
//! thread's own minor-fault counter (`/proc/thread-self/stat`), so the figure
//! is exact and holds on any machine load. Linux only, like the services.

use std::time::Duration;

use audit_sdk::{AuditConfig, AuditEvent, AuditStore};

/// This thread's minor page faults so far (field 10 of its stat line; the
/// fields are counted after the command name, which may hold spaces).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags,
    // minflt (10).
    after_name.split(' ').nth(7).unwrap().parse().unwrap()
}

fn events(n: usize, tag: &str) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            AuditEvent::builder("gateway.signal.received", format!("rr-{tag}-{i}"))
                .category("gateway")
                .action("received")
                .build()
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_burst_like_the_last_one_is_recorded_without_a_page_fault() {
    // 4,000 events of ~450 bytes: about 450 pages of inbox per burst.
    const BURST: usize = 4_000;
    let spool = tempfile::tempdir().unwrap();
    let mut config = AuditConfig::new("http://127.0.0.1:9"); // never reached
    config.spool_dir = Some(spool.path().to_owned());
    config.buffer_capacity = 4 * BURST;
    config.shutdown_timeout = Duration::ZERO;
    let store = AuditStore::new(config).unwrap();

    // The first burst tells the intake how large bursts are; once it is on
    // disk, the intake has also prepared the next inbox vector (same call).
    for e in events(BURST, "first") {
        store.record(e).unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    store.sync_within(deadline).await.unwrap();

    // Built (and so faulted in) before counting. The loop never yields, so
    // the background tasks cannot run on this thread inside it: every fault
    // counted is `record()`'s own.
    let second = events(BURST, "second");
    let before = minor_faults();
    for e in second {
        store.record(e).unwrap();
    }
    let faults = minor_faults() - before;
    println!("{BURST} record() calls took {faults} page faults");
    // Without the prepared vector: one fault per page of events (~450).
    assert!(
        faults <= 8,
        "{faults} page faults for {BURST} record() calls"
    );
    store.close().await;
}
