//! A durable waiter does not wait out the intake's linger: an intake busy with
//! a burst lingers 1 ms for more events, but `record_durable` wakes it at once
//! (`client/intake.rs`). On paused time, where the linger is the only timer
//! that could pass, any virtual time at all means the caller waited for it.

use std::time::Duration;

mod common;

use audit_sdk::{AuditConfig, AuditStore, FsyncPolicy};
use common::event;
use datastorage::testing::ports::free_port;

#[tokio::test(start_paused = true)]
async fn a_durable_waiter_wakes_a_lingering_intake() {
    let dir = tempfile::tempdir().unwrap();
    // DataStorage down: nothing but the spool is involved.
    let mut c = AuditConfig::new(format!("http://127.0.0.1:{}", free_port()));
    c.spool_dir = Some(dir.path().to_owned());
    c.spool_fsync = FsyncPolicy::Always;
    c.shutdown_timeout = Duration::from_millis(200);
    let store = AuditStore::new(c).unwrap();
    let mut waits = Vec::new();
    for round in 0..20 {
        // A plain record makes the intake busy: it drains, writes, and then
        // lingers for more. The durable record arrives during that turn.
        store.record(event("rr-durable-wake", 2 * round)).unwrap();
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        store
            .record_durable(event("rr-durable-wake", 2 * round + 1))
            .await
            .unwrap();
        waits.push(started.elapsed());
    }
    println!("durable waits on paused time over 20 rounds: {waits:?}");
    assert!(
        waits.iter().all(|w| *w < Duration::from_millis(1)),
        "a durable waiter waited out the linger: {waits:?}"
    );
    store.close().await;
}
