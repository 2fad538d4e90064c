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

/// Longest the intake may take to write a burst and prepare the next vector.
const SETTLE: Duration = Duration::from_secs(1);

/// Records `bursts` one after the other, letting the intake take each one
/// in before the next, and answers the page faults `record()` took in the
/// last one. The settling is a `flush` whose timeout is expected: the intake
/// answers it only after its write (and the vector it prepares) is done,
/// while delivery to the unreachable DataStorage never finishes. The
/// timeout bounds the intake's turn (milliseconds), with room for a loaded
/// machine: there is no other signal of that turn, because a DataStorage
/// that answers frees the delivered bursts' memory, which the allocator
/// then hands out again already faulted in, and the growth this test is
/// about (an outage, the bench) no longer shows.
async fn faults_in_last_burst(spooled: bool, bursts: &[usize]) -> u64 {
    let spool = tempfile::tempdir().unwrap();
    let mut config = AuditConfig::new("http://127.0.0.1:9"); // never reached
    if spooled {
        config.spool_dir = Some(spool.path().to_owned());
    }
    config.buffer_capacity = bursts.iter().sum::<usize>() + 1;
    config.shutdown_timeout = Duration::ZERO;
    let store = AuditStore::new(config).unwrap();
    let (last, before) = bursts.split_last().unwrap();
    for (n, &burst) in before.iter().enumerate() {
        for e in events(burst, &n.to_string()) {
            store.record(e).unwrap();
        }
        let settled = store.flush_timeout(SETTLE).await;
        assert!(settled.is_err(), "nothing can be delivered");
    }
    // Built (and so faulted in) before counting. The loop never yields, so
    // the background tasks cannot run on this thread inside it: every fault
    // counted is `record()`'s own.
    let measured = events(*last, "last");
    let start = minor_faults();
    for e in measured {
        store.record(e).unwrap();
    }
    let faults = minor_faults() - start;
    store.close().await;
    faults
}

// 4,000 events of ~450 bytes: about 450 pages of inbox per burst; without a
// prepared vector, one fault per page.

#[tokio::test(flavor = "current_thread")]
async fn a_burst_like_the_last_one_is_recorded_without_a_page_fault() {
    for spooled in [true, false] {
        let faults = faults_in_last_burst(spooled, &[4_000, 4_000, 4_000]).await;
        println!("spool {spooled}: 4000 record() calls took {faults} page faults");
        assert!(faults <= 8, "spool {spooled}: {faults} page faults");
    }
}

/// A vector sized for the last burst only would be a quarter of this one's
/// size after two smaller bursts, and regrow under the producer.
#[tokio::test(flavor = "current_thread")]
async fn smaller_bursts_in_between_do_not_shrink_the_prepared_vector() {
    for spooled in [true, false] {
        let faults = faults_in_last_burst(spooled, &[4_000, 1_000, 1_000, 4_000]).await;
        println!(
            "spool {spooled}: 4000 record() calls after two of 1000 took {faults} page faults"
        );
        assert!(faults <= 8, "spool {spooled}: {faults} page faults");
    }
}
