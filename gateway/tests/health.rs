//! `/healthz`, `/readyz` and graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    alert, free_port, gateway_config, start_datastorage, start_gateway, wait_status, webhook,
};
use gateway::remediation::memory::MemoryBackend;

#[tokio::test]
async fn readyz_waits_for_datastorage_and_turns_503_when_shutdown_starts() {
    common::install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds_port = free_port();
    let mut config = gateway_config(&format!("http://127.0.0.1:{ds_port}"));
    // Long enough to observe 503 while the listeners still serve.
    config.server.shutdown_delay = Duration::from_millis(500);
    let gw = start_gateway(
        config,
        Arc::new(MemoryBackend::new(Duration::from_secs(60))),
    )
    .await;
    let health = |path: &str| format!("http://{}{path}", gw.health);

    let live = reqwest::get(health("/healthz")).await.unwrap();
    assert_eq!(live.status(), 200);
    wait_status(&health("/readyz"), 503).await;
    let body: serde_json::Value = reqwest::get(health("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data_storage"], "unreachable", "{body}");

    let ds = start_datastorage(&dir.path().join("audit.db"), ds_port).await;
    wait_status(&health("/readyz"), 200).await;
    // Also served on the API port, outside the signal routes.
    wait_status(&gw.url("/readyz"), 200).await;

    gw.stop.cancel();
    wait_status(&health("/readyz"), 503).await;
    let body: serde_json::Value = reqwest::get(health("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "shutting_down");
    // Still serving signals during the propagation delay.
    let resp = gw
        .post_json(
            "/api/v1/signals/prometheus",
            &webhook(vec![alert("HighMemory", "payments", "late")]),
        )
        .await;
    assert_eq!(resp.status(), 201);
    // The audit store is closed on the way out, after delivering everything.
    let audit = gw.audit.clone();
    gw.task.await.unwrap().unwrap();
    assert!(
        audit
            .record(
                audit_sdk::AuditEvent::builder("gateway.signal.received", "rr-x")
                    .category("gateway")
                    .action("received")
                    .actor("service", "gateway")
                    .resource("Deployment", "payments/late")
                    .build()
            )
            .is_err(),
        "the store is closed after shutdown"
    );
    let stored = common::audit_events(&ds.url(), "event_category=gateway").await;
    assert_eq!(
        common::types(&stored),
        ["gateway.signal.received", "gateway.crd.created"]
    );
    ds.shutdown().await;
}

/// Readiness never cascades: once DataStorage has answered, its outage is
/// reported in the body (and the SDK's gauge), while `/readyz` stays 200 as
/// long as the spool has room.
#[tokio::test]
async fn readyz_stays_200_and_reports_degraded_when_datastorage_goes_away_after_answering() {
    common::install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds_port = free_port();
    let mut config = gateway_config(&format!("http://127.0.0.1:{ds_port}"));
    config.audit.spool_dir = Some(dir.path().join("spool"));
    let gw = start_gateway(
        config,
        Arc::new(MemoryBackend::new(Duration::from_secs(60))),
    )
    .await;
    let readyz = format!("http://{}/readyz", gw.health);
    wait_status(&readyz, 503).await;
    let ds = start_datastorage(&dir.path().join("audit.db"), ds_port).await;
    wait_status(&readyz, 200).await;
    ds.shutdown().await;

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let resp = reqwest::get(&readyz).await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "a DataStorage outage must not turn /readyz into 503"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        if body["data_storage"] == "degraded" {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never degraded: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["status"], "ready", "{body}");
    assert!(
        body["data_storage_reason"]
            .as_str()
            .is_some_and(|r| r.contains(&ds_port.to_string())),
        "{body}"
    );
    // Signals are still answered, their audit trail spooled.
    let resp = gw
        .post_json(
            "/api/v1/signals/prometheus",
            &webhook(vec![alert("HighMemory", "payments", "degraded")]),
        )
        .await;
    assert_eq!(resp.status(), 201);
    gw.stop.cancel();
    gw.task.await.unwrap().unwrap();
}
