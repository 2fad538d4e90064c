//! Signals in, RemediationRequests out, every step audited: the memory backend
//! against a real DataStorage running in this process.

mod common;

use common::{alert, audit_events, start_stack, types, webhook};
use gateway::api::response::{MultiStatus, ResultStatus, SignalResult};
use serde_json::{json, Value};

const PROMETHEUS: &str = "/api/v1/signals/prometheus";
const K8S_EVENT: &str = "/api/v1/signals/kubernetes-event";

#[tokio::test]
async fn an_alert_creates_a_request_and_its_repeat_is_counted_as_a_duplicate() {
    let stack = start_stack().await;
    let gw = &stack.gw;

    let first = gw
        .post_json(
            PROMETHEUS,
            &webhook(vec![alert("HighMemory", "payments", "api")]),
        )
        .await;
    assert_eq!(first.status(), 201);
    let first: SignalResult = first.json().await.unwrap();
    assert_eq!(first.status, ResultStatus::Created);
    let rr = first.remediation_request.clone().unwrap();
    let fp = first.fingerprint.clone().unwrap();
    assert!(rr.starts_with(&format!("rr-{}-", &fp[..12])), "{rr}");

    gw.audit.flush().await.unwrap();
    let trail = audit_events(&stack.ds.url(), &format!("correlation_id={rr}")).await;
    assert_eq!(
        types(&trail),
        ["gateway.signal.received", "gateway.crd.created"]
    );
    for e in &trail {
        assert_eq!(e["event_category"], "gateway");
        assert_eq!(e["correlation_id"], rr.as_str());
        let data = &e["event_data"];
        assert_eq!(data["signal_name"], "HighMemory");
        assert_eq!(data["fingerprint"], fp.as_str());
        assert_eq!(data["namespace"], "payments");
        assert_eq!(data["severity"], "critical");
        assert_eq!(data["resource_kind"], "Deployment");
        assert_eq!(data["resource_name"], "api");
        assert_eq!(
            data["remediation_request"],
            format!("{}/{rr}", audit_sdk::names::NAMESPACE)
        );
        assert_eq!(data["deduplication_status"], "new");
        assert_eq!(data["occurrence_count"], 1);
        assert_eq!(data["signal_labels"]["alertname"], "HighMemory");
        assert_eq!(data["signal_annotations"]["summary"], "HighMemory on api");
    }
    assert_eq!(trail[1]["parent_event_id"], trail[0]["event_id"]);

    // A different alert about the same Deployment is the same fingerprint.
    let second = gw
        .post_json(
            PROMETHEUS,
            &webhook(vec![alert("HighLatency", "payments", "api")]),
        )
        .await;
    assert_eq!(second.status(), 202);
    let second: SignalResult = second.json().await.unwrap();
    assert_eq!(second.status, ResultStatus::Duplicate);
    assert_eq!(second.remediation_request.as_deref(), Some(rr.as_str()));
    assert_eq!(second.occurrence_count, Some(2));

    gw.audit.flush().await.unwrap();
    let trail = audit_events(&stack.ds.url(), &format!("correlation_id={rr}")).await;
    assert_eq!(
        types(&trail),
        [
            "gateway.signal.received",
            "gateway.crd.created",
            "gateway.signal.deduplicated"
        ]
    );
    assert_eq!(trail[2]["event_data"]["occurrence_count"], 2);
    assert_eq!(trail[2]["event_data"]["deduplication_status"], "duplicate");
    assert_eq!(trail[2]["event_data"]["signal_name"], "HighLatency");

    let stored = stack.backend.get(&rr).unwrap();
    assert_eq!(stored.occurrence_count, 2);
    assert_eq!(stack.backend.requests().len(), 1);
}

#[tokio::test]
async fn a_webhook_with_three_alerts_answers_207_with_one_result_each() {
    let stack = start_stack().await;
    let gw = &stack.gw;
    let resp = gw
        .post_json(
            PROMETHEUS,
            &webhook(vec![
                alert("HighMemory", "payments", "api"),
                alert("HighCPU", "payments", "api"),
                alert("HighMemory", "payments", "worker"),
            ]),
        )
        .await;
    assert_eq!(resp.status(), 207);
    let body: MultiStatus = resp.json().await.unwrap();
    let statuses: Vec<ResultStatus> = body.results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            ResultStatus::Created,
            ResultStatus::Duplicate,
            ResultStatus::Created
        ]
    );
    assert_eq!(
        body.results.iter().map(|r| r.index).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2)]
    );
    assert_eq!(body.summary.total, 3);
    assert_eq!(body.summary.created, 2);
    assert_eq!(body.summary.duplicate, 1);
    assert_eq!(body.summary.rejected + body.summary.failed, 0);
    let api_rr = body.results[0].remediation_request.clone().unwrap();
    assert_eq!(
        body.results[1].remediation_request.as_deref(),
        Some(api_rr.as_str())
    );
    assert_eq!(body.results[1].occurrence_count, Some(2));
    let worker_rr = body.results[2].remediation_request.clone().unwrap();
    assert_ne!(api_rr, worker_rr);
    assert_ne!(body.results[0].fingerprint, body.results[2].fingerprint);

    gw.audit.flush().await.unwrap();
    let api_trail = audit_events(&stack.ds.url(), &format!("correlation_id={api_rr}")).await;
    assert_eq!(
        types(&api_trail),
        [
            "gateway.signal.received",
            "gateway.crd.created",
            "gateway.signal.deduplicated"
        ]
    );
    assert_eq!(api_trail[2]["event_data"]["signal_name"], "HighCPU");
    assert_eq!(api_trail[2]["event_data"]["occurrence_count"], 2);
    let worker_trail = audit_events(&stack.ds.url(), &format!("correlation_id={worker_rr}")).await;
    assert_eq!(
        types(&worker_trail),
        ["gateway.signal.received", "gateway.crd.created"]
    );
    assert_eq!(worker_trail[0]["event_data"]["resource_name"], "worker");
    // Nothing else was audited.
    assert_eq!(
        audit_events(&stack.ds.url(), "event_category=gateway")
            .await
            .len(),
        5
    );
}

#[tokio::test]
async fn one_bad_alert_in_a_webhook_is_rejected_while_its_neighbours_go_ahead() {
    let stack = start_stack().await;
    let mut bad = alert("X", "payments", "api");
    bad["labels"].as_object_mut().unwrap().remove("alertname");
    let resp = stack
        .gw
        .post_json(
            PROMETHEUS,
            &webhook(vec![bad, alert("HighMemory", "payments", "api")]),
        )
        .await;
    assert_eq!(resp.status(), 207);
    let body: MultiStatus = resp.json().await.unwrap();
    assert_eq!(body.results[0].status, ResultStatus::Rejected);
    assert!(
        body.results[0]
            .message
            .contains("alerts[0].labels.alertname"),
        "{}",
        body.results[0].message
    );
    assert_eq!(body.results[1].status, ResultStatus::Created);
    assert_eq!(body.summary.rejected, 1);
    assert_eq!(stack.backend.requests().len(), 1);
}

fn warning_event(pod: &str) -> Value {
    let now = chrono::Utc::now();
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{pod}.187a"), "namespace": "payments"},
        "type": "Warning",
        "reason": "BackOff",
        "message": "Back-off restarting failed container api",
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": "payments"},
        "source": {"component": "kubelet", "host": "worker-1"},
        "firstTimestamp": (now - chrono::Duration::minutes(2)).to_rfc3339(),
        "lastTimestamp": (now - chrono::Duration::seconds(5)).to_rfc3339(),
        "count": 4
    })
}

#[tokio::test]
async fn a_warning_event_creates_a_request_and_repeats_deduplicate() {
    let stack = start_stack().await;
    let gw = &stack.gw;
    let resp = gw.post_json(K8S_EVENT, &warning_event("api-0")).await;
    assert_eq!(resp.status(), 201);
    let created: SignalResult = resp.json().await.unwrap();
    let rr = created.remediation_request.unwrap();
    let resp = gw.post_json(K8S_EVENT, &warning_event("api-0")).await;
    assert_eq!(resp.status(), 202);

    gw.audit.flush().await.unwrap();
    let trail = audit_events(&stack.ds.url(), &format!("correlation_id={rr}")).await;
    assert_eq!(
        types(&trail),
        [
            "gateway.signal.received",
            "gateway.crd.created",
            "gateway.signal.deduplicated"
        ]
    );
    assert_eq!(trail[0]["event_data"]["signal_source"], "kubernetes-event");
    assert_eq!(trail[0]["event_data"]["resource_kind"], "Pod");
    assert_eq!(trail[0]["severity"], "warning");
}

#[tokio::test]
async fn metrics_count_signals_and_label_latency_by_route_template() {
    let stack = start_stack().await;
    let gw = &stack.gw;
    gw.post_json(
        PROMETHEUS,
        &webhook(vec![alert("HighMemory", "payments", "metrics-api")]),
    )
    .await;
    let text = gw
        .client
        .get(format!("http://{}/metrics", gw.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "gateway_signals_received_total{source=\"prometheus\"}",
        "gateway_remediation_requests_created_total{source=\"prometheus\"}",
        "gateway_http_request_duration_seconds_bucket{route=\"/api/v1/signals/prometheus\"",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[tokio::test]
async fn a_failed_creation_answers_503_and_is_audited_as_crd_failed() {
    common::install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds = common::start_datastorage(&dir.path().join("audit.db"), 0).await;
    let backend = std::sync::Arc::new(common::refusing_backend::RefusingBackend(
        gateway::remediation::memory::MemoryBackend::new(std::time::Duration::from_secs(60)),
    ));
    let gw = common::start_gateway(common::gateway_config(&ds.url()), backend).await;
    let resp = gw
        .post_json(
            PROMETHEUS,
            &webhook(vec![alert("HighMemory", "payments", "api")]),
        )
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://kubernaut.ai/problems/service-unavailable"
    );

    gw.audit.flush().await.unwrap();
    let trail = audit_events(&ds.url(), "event_category=gateway").await;
    assert_eq!(
        types(&trail),
        ["gateway.signal.received", "gateway.crd.failed"]
    );
    let failed = &trail[1];
    assert_eq!(failed["event_outcome"], "failure");
    assert_eq!(failed["error_code"], "backend_unavailable");
    assert_eq!(failed["event_data"]["error_code"], "backend_unavailable");
    assert_eq!(failed["correlation_id"], trail[0]["correlation_id"]);
    assert_eq!(failed["parent_event_id"], trail[0]["event_id"]);

    // Readiness reports the backend.
    let ready = reqwest::get(format!("http://{}/readyz", gw.health))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["backend"], "refusing");
}
