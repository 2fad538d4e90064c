//! Delivery against a real DataStorage on loopback: everything recorded is
//! stored exactly once, whatever happens to the server.

mod common;

use std::time::Duration;

use audit_sdk::{AuditStore, FlushError, TransportKind};
use common::*;

async fn ten_thousand_are_stored_exactly_once(transport: TransportKind) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("audit.db"), 0).await;
    let mut config = sdk_config(&server.url());
    config.transport = transport;
    let store = AuditStore::new(config).unwrap();
    let ids: Vec<_> = (0..10_000)
        .map(|n| store.record(event("corr-10k", n)).unwrap())
        .collect();
    store.flush_timeout(Duration::from_secs(60)).await.unwrap();
    assert_stored_exactly(&server.url(), "corr-10k", &ids).await;
    let report = store.close().await;
    assert_eq!(
        (report.delivered, report.lost, report.spooled),
        (10_000, 0, 0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_events_over_http_are_stored_exactly_once() {
    ten_thousand_are_stored_exactly_once(TransportKind::Http).await;
}

#[tokio::test]
async fn ten_thousand_events_over_grpc_are_stored_exactly_once() {
    ten_thousand_are_stored_exactly_once(TransportKind::Grpc).await;
}

#[tokio::test]
async fn events_recorded_before_datastorage_starts_are_delivered_once_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let store = AuditStore::new(sdk_config(&base)).unwrap();
    let mut ids = Vec::new();
    // DataStorage is down for the first 10 s while events keep coming.
    let outage = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while tokio::time::Instant::now() < outage {
        for _ in 0..50 {
            ids.push(store.record(event("corr-late", n)).unwrap());
            n += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !store.is_ready(),
        "the probe must report DataStorage unreachable"
    );
    let server = start_server(&dir.path().join("audit.db"), port).await;
    store.flush_timeout(Duration::from_secs(30)).await.unwrap();
    assert_stored_exactly(&base, "corr-late", &ids).await;
    assert_eq!(store.lost(), 0);
    store.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn flush_while_datastorage_is_down_fails_with_the_pending_count() {
    let port = free_port();
    let store = AuditStore::new(sdk_config(&format!("http://127.0.0.1:{port}"))).unwrap();
    for n in 0..25 {
        store.record(event("corr-down", n)).unwrap();
    }
    let started = std::time::Instant::now();
    let err = store
        .flush_timeout(Duration::from_millis(800))
        .await
        .unwrap_err();
    assert_eq!(err, FlushError::Timeout { pending: 25 });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "flush must honour its timeout"
    );
    let report = store.close().await;
    assert_eq!(
        report.lost, 25,
        "memory-only events are lost at close, and reported"
    );
}

#[tokio::test]
async fn datastorage_killed_mid_stream_and_restarted_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_process(&db, port).await;
    let mut config = sdk_config(&base);
    config.batch_size = 100;
    let store = AuditStore::new(config).unwrap();

    let mut ids = Vec::new();
    for n in 0..3000 {
        ids.push(store.record(event("corr-kill", n)).unwrap());
        if n == 1500 {
            server.child.kill().await.unwrap();
        }
        if n % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // While the server is dead, nothing can be confirmed.
    assert!(store
        .flush_timeout(Duration::from_millis(300))
        .await
        .is_err());
    server = start_process(&db, port).await;
    store.flush_timeout(Duration::from_secs(60)).await.unwrap();
    assert_stored_exactly(&base, "corr-kill", &ids).await;
    let report = store.close().await;
    assert_eq!(report.lost, 0);
    drop(server);
}
