//! The signal routes need verb `create` on gateway-service; probes stay open.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use gateway::remediation::memory::MemoryBackend;

const SENDER: &str = "alertmanager-token-0123456789";
const VIEWER: &str = "viewer-token-0123456789abcd";

#[tokio::test]
async fn signals_need_a_token_with_create_and_probes_stay_open() {
    install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds = start_datastorage(&dir.path().join("audit.db"), 0).await;
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!(
            "{SENDER}: {{subject: \"system:serviceaccount:monitoring:alertmanager\", verbs: [create]}}\n\
             {VIEWER}: {{subject: viewer, verbs: [list, get]}}\n"
        ),
    )
    .unwrap();
    let mut config = gateway_config(&ds.url());
    config.auth.mode = auth::AuthMode::Static;
    config.auth.tokens_file = Some(tokens);
    let gw = start_gateway(
        config,
        Arc::new(MemoryBackend::new(Duration::from_secs(300))),
    )
    .await;

    let body = webhook(vec![alert("HighMemory", "payments", "api")]);
    let url = gw.url("/api/v1/signals/prometheus");
    let anonymous = gw.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
    let viewer = gw
        .client
        .post(&url)
        .bearer_auth(VIEWER)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(viewer.status(), 403);
    let text = viewer.text().await.unwrap();
    assert!(
        text.contains("create") && text.contains("gateway-service"),
        "{text}"
    );
    let sender = gw
        .client
        .post(&url)
        .bearer_auth(SENDER)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(sender.status(), 201);

    for probe in [
        format!("http://{}/readyz", gw.health),
        format!("http://{}/healthz", gw.health),
        format!("http://{}/metrics", gw.metrics),
    ] {
        let status = gw.client.get(&probe).send().await.unwrap().status();
        assert_ne!(status, 401, "{probe}");
    }
    gw.shutdown().await;
    ds.shutdown().await;
}
