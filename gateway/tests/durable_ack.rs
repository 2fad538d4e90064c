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

/// A spool that cannot take the signal's events (full, as a full disk would
/// leave it) must not get a 2xx: the answer is 503 + Retry-After (RFC 7807)
/// within `audit.durable_ack_timeout`, below Alertmanager's 10 s webhook
/// timeout, and every 201 before it had its events on disk.
#[tokio::test]
async fn a_spool_that_cannot_confirm_the_events_gets_503_with_retry_after_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let mut config = gateway_config(&format!("http://127.0.0.1:{}", free_port()));
    config.audit.spool_dir = Some(spool.clone());
    config.audit.spool_fsync = audit_sdk::FsyncPolicy::Never;
    config.audit.spool_segment_bytes = 4096;
    config.audit.spool_max_bytes = 8192;
    config.audit.durable_ack_timeout = Duration::from_millis(300);
    config.audit.shutdown_timeout = Duration::from_millis(300);
    let gw = start_gateway(
        config,
        Arc::new(MemoryBackend::new(Duration::from_secs(60))),
    )
    .await;
    let mut created = 0u64;
    let mut refused = None;
    for n in 0..200 {
        let started = std::time::Instant::now();
        let resp = gw
            .post_json(
                "/api/v1/signals/prometheus",
                &webhook(vec![alert("HighMemory", "payments", &format!("api-{n}"))]),
            )
            .await;
        if resp.status() == 201 {
            created += 1;
            assert!(spooled_now(&spool) >= 2 * created, "201 number {created}");
            continue;
        }
        refused = Some((resp, started.elapsed()));
        break;
    }
    let (resp, took) = refused.expect("a full spool must refuse a signal");
    println!("201 answers before the spool filled: {created}; refusal after {took:?}");
    assert!(created > 0, "the spool had room for the first signals");
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "RFC 7807"
    );
    assert!(
        took < Duration::from_secs(3),
        "answered within durable_ack_timeout, not flush_timeout: {took:?}"
    );
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(problem["status"], 503);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not confirmed durable"),
        "{problem}"
    );
    gw.stop.cancel();
    let _ = gw.task.await.unwrap();
}
