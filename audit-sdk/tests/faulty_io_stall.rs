//! A stalled disk: the spool's fsync blocks (a dying disk, a hung network
//! volume) while the intake is inside it. `flush()`, `sync_within()` and
//! `close()` still return by their own deadlines, and what they report adds
//! up: nothing is counted delivered that DataStorage never acknowledged, and
//! what `close()` reports spooled is found by the next store.
//!
//! Real time, not paused: the stalled call is a real blocked thread (tokio's
//! paused clock would run ahead of it). Each wait has a 10 s guard, far past
//! every deadline, that fails the test instead of hanging it.

#[allow(dead_code)] // these tests use the aimed faults only
mod faulty_io;

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_sdk::{AuditConfig, AuditEvent, AuditStore, FlushError, FsyncPolicy, SyncError};
use datastorage::testing::ports::free_port;
use faulty_io::{Aimed, FaultyIo};

/// Events recorded after the fsync stalls.
const STALLED: u64 = 10;
/// Longest a deadline may be overrun (a loaded 2-core machine).
const SLACK: Duration = Duration::from_secs(3);
/// Past this the call hangs: the test fails instead of waiting forever.
const GUARD: Duration = Duration::from_secs(10);

fn event(n: u64) -> AuditEvent {
    AuditEvent::builder("gateway.signal.received", format!("rr-{n:012}-abcdefgh"))
        .category("gateway")
        .action("received")
        .actor("service", "gateway")
        .resource("Deployment", "payments/api")
        .build()
}

/// DataStorage down (nothing listens), every append fsynced.
fn config(dir: &std::path::Path) -> AuditConfig {
    let mut c = AuditConfig::new(format!("http://127.0.0.1:{}", free_port()));
    c.spool_dir = Some(dir.to_owned());
    c.spool_fsync = FsyncPolicy::Always;
    c.shutdown_timeout = Duration::from_millis(300);
    c
}

/// Releases the stall when dropped, so a failing assertion ends the test
/// instead of leaving the runtime waiting for the stalled blocking thread.
struct ReleaseOnDrop(FaultyIo);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A store whose next fsync stalls while `STALLED` events are being written.
async fn stalled_store(dir: &std::path::Path) -> (AuditStore, FaultyIo) {
    let io = FaultyIo::default();
    let c = config(dir);
    let transport = audit_sdk::transport::build(&c).unwrap();
    let store = AuditStore::with_transport_and_io(c, transport, Arc::new(io.clone())).unwrap();
    store.record(event(0)).unwrap();
    store.sync().await.expect("a healthy disk confirms");
    io.aim("sync_data", 1, Aimed::Stall);
    for n in 1..=STALLED {
        store.record(event(n)).unwrap();
    }
    // The readiness signal: the intake is inside the stalled fsync.
    let waiting = io.clone();
    let stalled = tokio::task::spawn_blocking(move || waiting.wait_stalled(GUARD))
        .await
        .unwrap();
    assert!(stalled, "the intake reached the stalled fsync");
    (store, io)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_sync_return_by_their_deadlines_while_fsync_is_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let (store, io) = stalled_store(dir.path()).await;
    let _release = ReleaseOnDrop(io.clone());

    let started = Instant::now();
    let flushed = tokio::time::timeout(GUARD, store.flush_timeout(Duration::from_millis(300)))
        .await
        .expect("flush() hung on the stalled disk");
    let took = started.elapsed();
    println!("flush while fsync stalls: {flushed:?} after {took:?}");
    assert!(took < Duration::from_millis(300) + SLACK, "{took:?}");
    // Nothing reached DataStorage: the stalled events at least are pending
    // (`pending` counts the events not in the spool yet).
    assert!(
        matches!(flushed, Err(FlushError::Timeout { pending }) if pending >= STALLED),
        "{flushed:?}"
    );

    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let synced = tokio::time::timeout(GUARD, store.sync_within(deadline))
        .await
        .expect("sync_within() hung on the stalled disk");
    let took = started.elapsed();
    println!("sync_within while fsync stalls: {synced:?} after {took:?}");
    assert!(took < Duration::from_millis(300) + SLACK, "{took:?}");
    // Written but not confirmed durable: the caller must not answer 2xx.
    assert!(
        matches!(synced, Err(SyncError::NotWritten { pending, .. }) if pending == STALLED),
        "{synced:?}"
    );

    io.release();
    let deadline = tokio::time::Instant::now() + GUARD;
    store
        .sync_within(deadline)
        .await
        .expect("confirmed once the disk answers");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_by_its_deadline_while_fsync_is_stalled_and_its_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let (store, io) = stalled_store(dir.path()).await;
    let _release = ReleaseOnDrop(io.clone());

    let started = Instant::now();
    let report = tokio::time::timeout(GUARD, store.close())
        .await
        .expect("close() hung on the stalled disk");
    let took = started.elapsed();
    println!("close while fsync stalls: {report:?} after {took:?}");
    assert!(took < Duration::from_millis(300) + SLACK, "{took:?}");
    assert_eq!(report.delivered, 0, "DataStorage acknowledged nothing");
    assert_eq!(
        report.spooled + report.lost + report.rejected,
        STALLED + 1,
        "every recorded event is reported once"
    );

    // The disk answers again; the stalled write completes and the store's
    // last handle goes away. A new store finds at least what was reported
    // spooled (the stalled events were written before their fsync).
    io.release();
    drop(store);
    let mut c = config(dir.path());
    c.shutdown_timeout = Duration::ZERO;
    let next = {
        let until = Instant::now() + GUARD;
        loop {
            // The old store's blocking task may still hold the directory lock
            // for a moment after the release.
            match AuditStore::new(c.clone()) {
                Ok(s) => break s,
                Err(e) if Instant::now() < until => {
                    println!("spool still locked: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the spool stays locked: {e}"),
            }
        }
    };
    let found = next.close().await;
    println!("next store: {found:?}");
    assert!(
        found.spooled >= report.spooled,
        "reported spooled {} but the next store found {}",
        report.spooled,
        found.spooled
    );
    assert!(found.spooled <= STALLED + 1);
    // Events inside the stalled append are reported lost by close() (it
    // cannot know whether they reached the disk); those the disk did take
    // come back: a false alarm, never a silent loss.
    println!(
        "reported lost {} of which the next store found {}",
        report.lost,
        found.spooled - report.spooled
    );
}
