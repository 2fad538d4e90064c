//! `audit.durable_ack`: a 2xx answer implies the signal's audit events are on
//! disk in the spool, so a SIGKILL right after the answer loses none of them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use audit_sdk::spool::{Spool, SpoolOptions};
use common::{alert, free_port, gateway_config, start_gateway, webhook};
use gateway::remediation::memory::MemoryBackend;

/// What a process reopening the spool right now would find (a copy, taken
/// while the Gateway still runs: the state a SIGKILL would leave).
fn spooled_now(dir: &std::path::Path) -> u64 {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let (_, recovery) = Spool::open(SpoolOptions {
        dir: copy.path().to_owned(),
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        fsync: audit_sdk::FsyncPolicy::Never,
        fsync_interval: Duration::from_secs(1),
    })
    .unwrap();
    recovery.pending
}

#[tokio::test]
async fn every_signal_answered_201_has_its_audit_events_in_the_spool_already() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // DataStorage is down: the events can only be in the spool.
    let mut config = gateway_config(&format!("http://127.0.0.1:{}", free_port()));
    config.audit.spool_dir = Some(spool.clone());
    config.audit.spool_fsync = audit_sdk::FsyncPolicy::Never; // only durable_ack fsyncs
    config.audit.shutdown_timeout = Duration::from_millis(300);
    assert!(
        config.audit.durable_ack_enabled(),
        "default on with a spool_dir"
    );
    let gw = start_gateway(
        config,
        Arc::new(MemoryBackend::new(Duration::from_secs(60))),
    )
    .await;
    for n in 0..20 {
        let resp = gw
            .post_json(
                "/api/v1/signals/prometheus",
                &webhook(vec![alert("HighMemory", "payments", &format!("api-{n}"))]),
            )
            .await;
        assert_eq!(resp.status(), 201);
        // received + crd.created of every signal answered so far.
        assert_eq!(spooled_now(&spool), 2 * (n + 1), "after signal {n}");
    }
    gw.stop.cancel();
    gw.task.await.unwrap().unwrap();
}
