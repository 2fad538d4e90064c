//! `sync_within(deadline)`: a caller that must answer before its own sender
//! gives up (the Gateway under Alertmanager's 10 s webhook timeout) learns
//! within that deadline that its events are not on disk, whether the disk
//! fails (the fault-injecting `SpoolIo`, dead after one write) or the spool
//! cannot take them (full, DataStorage down), on paused time.

#[allow(dead_code)] // this test uses one of its plans
mod faulty_io;

use std::sync::Arc;
use std::time::Duration;

use audit_sdk::{AuditConfig, AuditEvent, AuditStore, FsyncPolicy, SyncError};
use datastorage::testing::ports::free_port;
use faulty_io::{FaultyIo, Plan};

fn event(n: usize) -> AuditEvent {
    AuditEvent::builder("gateway.signal.received", format!("rr-{n:012}-abcdefgh"))
        .category("gateway")
        .action("received")
        .actor("service", "gateway")
        .resource("Deployment", "payments/api")
        .build()
}

/// DataStorage down (nothing listens), a spool in a temp dir.
fn config(dir: &std::path::Path) -> AuditConfig {
    let mut c = AuditConfig::new(format!("http://127.0.0.1:{}", free_port()));
    c.spool_dir = Some(dir.to_owned());
    c.spool_fsync = FsyncPolicy::Never;
    c.shutdown_timeout = Duration::from_millis(200);
    c
}

#[tokio::test]
async fn a_failing_disk_is_reported_by_the_callers_deadline_not_flush_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::default();
    let c = config(dir.path());
    let transport = audit_sdk::transport::build(&c).unwrap();
    let store = AuditStore::with_transport_and_io(c, transport, Arc::new(io.clone())).unwrap();
    store.record(event(0)).unwrap();
    store.sync().await.expect("a healthy disk confirms");
    // From the next write on, the disk is gone: every call fails.
    io.arm(Plan::CrashAfter { at: 1 });
    store.record(event(1)).unwrap();
    let started = tokio::time::Instant::now();
    let answer = store
        .sync_within(started + Duration::from_millis(300))
        .await;
    let took = started.elapsed();
    println!(
        "failing disk: {answer:?} after {took:?}; faults fired: {:?}",
        io.fired()
    );
    assert!(io.crashed(), "the fault fired");
    assert!(
        matches!(answer, Err(SyncError::NotWritten { pending: 1, .. })),
        "{answer:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "bounded by the deadline: {took:?}"
    );
    store.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_spool_that_cannot_take_the_events_misses_the_deadline_exactly_on_paused_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.spool_segment_bytes = 4096;
    c.spool_max_bytes = 8192;
    c.flush_timeout = Duration::from_secs(30);
    let store = AuditStore::new(c).unwrap();
    let mut n = 0;
    // Fill the spool: past this the events can only wait in memory.
    loop {
        store.record(event(n)).unwrap();
        n += 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        match store.sync_within(deadline).await {
            Ok(()) => assert!(n < 1000, "a 8 KiB spool holds fewer events"),
            Err(e) => {
                println!("spool full after {n} events: {e}");
                assert!(matches!(e, SyncError::NotWritten { pending: 1, .. }), "{e}");
                // Paused time: the wait ended at the caller's deadline, not
                // at flush_timeout (30 s).
                assert_eq!(tokio::time::Instant::now(), deadline);
                break;
            }
        }
    }
    assert!(n > 1, "the first events fit");
    store.close().await;
}
