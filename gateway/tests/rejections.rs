//! Inputs that are refused: each gets its status code and RFC 7807 problem,
//! and nothing is created or audited.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{audit_events, gateway_config, start_datastorage, start_gateway, Stack};
use gateway::domain::fingerprint::Fingerprint;
use gateway::remediation::memory::MemoryBackend;
use gateway::remediation::{ActiveRequest, BackendError, HeldLock, NewRequest, RemediationBackend};
use serde_json::Value;

const PROMETHEUS: &str = "/api/v1/signals/prometheus";
const K8S_EVENT: &str = "/api/v1/signals/kubernetes-event";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    timestamp: Option<String>,
    status: u16,
    slug: &'static str,
}

fn cases() -> Vec<Case> {
    // Valid in every way except its size: one alert with a huge annotation.
    let mut oversized: Value = serde_json::from_slice(&fixture("webhook.json")).unwrap();
    oversized["alerts"][0]["annotations"]["description"] = "x".repeat(300 * 1024).into();
    let now = Utc::now();
    vec![
        Case {
            name: "malformed JSON",
            path: PROMETHEUS,
            content_type: "application/json",
            body: fixture("malformed-webhook.json"),
            timestamp: None,
            status: 400,
            slug: "malformed-json",
        },
        Case {
            name: "webhook version 3",
            path: PROMETHEUS,
            content_type: "application/json",
            body: fixture("webhook-v3.json"),
            timestamp: None,
            status: 400,
            slug: "validation-error",
        },
        Case {
            name: "body over 256 KiB",
            path: PROMETHEUS,
            content_type: "application/json",
            body: serde_json::to_vec(&oversized).unwrap(),
            timestamp: None,
            status: 413,
            slug: "payload-too-large",
        },
        Case {
            name: "X-Timestamp 6 minutes old",
            path: PROMETHEUS,
            content_type: "application/json",
            body: fixture("webhook.json"),
            timestamp: Some((now - chrono::Duration::minutes(6)).to_rfc3339()),
            status: 400,
            slug: "stale-signal",
        },
        Case {
            name: "X-Timestamp 3 minutes ahead",
            path: K8S_EVENT,
            content_type: "application/json",
            body: fixture("normal-event.json"),
            timestamp: Some((now + chrono::Duration::minutes(3)).timestamp().to_string()),
            status: 400,
            slug: "stale-signal",
        },
        Case {
            name: "Normal event",
            path: K8S_EVENT,
            content_type: "application/json",
            body: fixture("normal-event.json"),
            timestamp: None,
            status: 400,
            slug: "validation-error",
        },
        Case {
            name: "event without involvedObject.kind",
            path: K8S_EVENT,
            content_type: "application/json",
            body: fixture("event-without-involved-kind.json"),
            timestamp: None,
            status: 400,
            slug: "validation-error",
        },
        Case {
            name: "non-JSON body",
            path: PROMETHEUS,
            content_type: "text/plain",
            body: fixture("not-json.txt"),
            timestamp: None,
            status: 415,
            slug: "unsupported-media-type",
        },
    ]
}

#[tokio::test]
async fn refused_inputs_get_their_status_and_nothing_is_created_or_audited() {
    let Stack {
        _dir,
        ds,
        gw,
        backend,
    } = common::start_stack().await;
    for case in cases() {
        let mut request = gw
            .client
            .post(gw.url(case.path))
            .header("content-type", case.content_type)
            .body(case.body);
        if let Some(ts) = &case.timestamp {
            request = request.header("x-timestamp", ts);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), case.status, "{}", case.name);
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{}",
            case.name
        );
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(
            problem["type"],
            format!("https://kubernaut.ai/problems/{}", case.slug),
            "{}: {problem}",
            case.name
        );
        assert_eq!(problem["status"], case.status, "{}", case.name);
    }
    // The same webhook with a fresh timestamp is accepted: the stale case was
    // refused for its timestamp alone.
    let fresh = gw
        .client
        .post(gw.url(PROMETHEUS))
        .header("content-type", "application/json")
        .header("x-timestamp", Utc::now().to_rfc3339())
        .body(fixture("webhook.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 201);

    gw.audit.flush().await.unwrap();
    assert_eq!(
        backend.requests().len(),
        1,
        "only the fresh webhook created"
    );
    let audited = audit_events(&ds.url(), "event_category=gateway").await;
    assert_eq!(
        common::types(&audited),
        ["gateway.signal.received", "gateway.crd.created"],
        "only the fresh webhook was audited"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let stack = common::start_stack().await;
    let gw = &stack.gw;
    let resp = gw.client.get(gw.url(PROMETHEUS)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let resp = gw
        .client
        .post(gw.url("/api/v1/signals/nagios"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
}

/// A backend whose every call takes longer than the Gateway's request timeout.
#[derive(Debug)]
struct SlowBackend {
    inner: MemoryBackend,
    delay: Duration,
}

#[async_trait]
impl RemediationBackend for SlowBackend {
    fn name(&self) -> &'static str {
        "slow"
    }
    async fn lock(&self, fp: &Fingerprint) -> Result<Box<dyn HeldLock>, BackendError> {
        self.inner.lock(fp).await
    }
    async fn find_active(&self, fp: &Fingerprint) -> Result<Option<ActiveRequest>, BackendError> {
        tokio::time::sleep(self.delay).await;
        self.inner.find_active(fp).await
    }
    async fn create(
        &self,
        request: &NewRequest,
    ) -> Result<gateway::remediation::Created, BackendError> {
        self.inner.create(request).await
    }
    async fn record_occurrence(
        &self,
        active: &ActiveRequest,
        seen_at: DateTime<Utc>,
    ) -> Result<u64, BackendError> {
        self.inner.record_occurrence(active, seen_at).await
    }
    async fn check_ready(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

#[tokio::test]
async fn processing_past_the_request_timeout_is_a_504_and_then_completes() {
    common::install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds = start_datastorage(&dir.path().join("audit.db"), 0).await;
    let mut config = gateway_config(&ds.url());
    config.server.request_timeout = Duration::from_millis(100);
    let backend = Arc::new(SlowBackend {
        inner: MemoryBackend::new(Duration::from_secs(300)),
        delay: Duration::from_millis(400),
    });
    let gw = start_gateway(config, backend.clone()).await;
    let resp = gw
        .client
        .post(gw.url(PROMETHEUS))
        .header("content-type", "application/json")
        .body(fixture("webhook.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://kubernaut.ai/problems/gateway-timeout"
    );
    // The work was not abandoned: the retry AlertManager will send finds the
    // request as a duplicate (the lock orders it after the first attempt).
    let retry = gw
        .client
        .post(gw.url(PROMETHEUS))
        .header("content-type", "application/json")
        .body(fixture("webhook.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 504, "still slow");
    // Wait for the background work through the backend's own state.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while backend.inner.requests().first().map(|r| r.occurrence_count) != Some(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "background work never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.inner.requests().len(), 1);
}
