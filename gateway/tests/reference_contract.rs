//! The Gateway as the reference platform's readers see it: its answers carry
//! what the reference Gateway's callers decode (`remediationRequestName`,
//! `remediationRequestNamespace`, a 207 summary's `deduplicated`), a body
//! without `Content-Type` is read as JSON as the reference does, and every
//! audit event it emits validates against a JSON Schema written from the
//! reference's `GatewayAuditPayload` (`schemas/reference-gateway-audit-event.schema.json`),
//! so a reference DataStorage would accept it and a reference reader decode it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{alert, audit_events, start_stack, types, webhook};
use serde_json::{json, Value};

const PROMETHEUS: &str = "/api/v1/signals/prometheus";
const K8S_EVENT: &str = "/api/v1/signals/kubernetes-event";
/// Where RemediationRequests live with the default configuration.
const RR_NAMESPACE: &str = audit_sdk::names::NAMESPACE;

fn schema() -> jsonschema::Validator {
    let text = include_str!("schemas/reference-gateway-audit-event.schema.json");
    let schema: Value = serde_json::from_str(text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

/// Every schema violation of `event`, one line each (empty when it conforms).
fn violations(validator: &jsonschema::Validator, event: &Value) -> Vec<String> {
    let mut out: Vec<String> = validator
        .iter_errors(event)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    // The discriminator: the payload's event_type is the event's own.
    if event["event_data"]["event_type"] != event["event_type"] {
        out.push(format!(
            "/event_data/event_type: {} is not the event's {}",
            event["event_data"]["event_type"], event["event_type"]
        ));
    }
    out
}

#[tokio::test]
async fn created_and_duplicate_answers_name_the_request_and_its_namespace() {
    let stack = start_stack().await;
    let gw = &stack.gw;
    let body = webhook(vec![alert("HighMemory", "payments", "api")]);

    let first = gw.post_json(PROMETHEUS, &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let rr = first["remediation_request"].as_str().unwrap().to_owned();
    assert_eq!(first["remediationRequestName"], rr.as_str(), "{first}");
    assert_eq!(
        first["remediationRequestNamespace"], RR_NAMESPACE,
        "{first}"
    );
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(first["status"], "created");

    let second = gw.post_json(PROMETHEUS, &body).await;
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["remediationRequestName"], rr.as_str(), "{second}");
    assert_eq!(second["remediationRequestNamespace"], RR_NAMESPACE);
    assert_eq!(second["duplicate"], true, "{second}");
    assert_eq!(second["status"], "duplicate");
}

#[tokio::test]
async fn a_207_summary_counts_duplicates_as_deduplicated() {
    let stack = start_stack().await;
    let resp = stack
        .gw
        .post_json(
            PROMETHEUS,
            &webhook(vec![
                alert("HighMemory", "payments", "api"),
                alert("HighCPU", "payments", "api"),
                alert("HighCPU", "payments", "worker"),
            ]),
        )
        .await;
    assert_eq!(resp.status(), 207);
    let body: Value = resp.json().await.unwrap();
    let summary = &body["summary"];
    assert_eq!(summary["deduplicated"], 1, "{summary}");
    assert_eq!(summary["duplicate"], 1, "{summary}");
    assert_eq!(summary["created"], 2, "{summary}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[1]["duplicate"], true);
    assert_eq!(
        results[1]["remediationRequestName"],
        results[0]["remediationRequestName"]
    );
    for r in results {
        assert_eq!(r["remediationRequestNamespace"], RR_NAMESPACE, "{r}");
    }
}

#[tokio::test]
async fn a_body_without_content_type_is_read_as_json() {
    let stack = start_stack().await;
    let gw = &stack.gw;
    let body = webhook(vec![alert("HighMemory", "payments", "api")]).to_string();
    let resp = gw
        .client
        .post(gw.url(PROMETHEUS))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("content-type").is_some());
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    assert_eq!(stack.backend.requests().len(), 1);

    // Kubernetes events too.
    let resp = gw
        .client
        .post(gw.url(K8S_EVENT))
        .body(warning_event("api-0").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    // Without a type, a body that is not JSON is a 400 (malformed), not a 415.
    let resp = gw
        .client
        .post(gw.url(PROMETHEUS))
        .body("alertname=HighMemory")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn a_wrong_explicit_content_type_is_still_refused_with_a_problem() {
    let stack = start_stack().await;
    let gw = &stack.gw;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        let resp = gw
            .client
            .post(gw.url(PROMETHEUS))
            .header("content-type", content_type)
            .body(webhook(vec![alert("HighMemory", "payments", "api")]).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 415, "{content_type}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(
            problem["type"],
            "https://kubernaut.ai/problems/unsupported-media-type"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(content_type),
            "{problem}"
        );
    }
    assert!(stack.backend.requests().is_empty());
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

fn node_alert() -> Value {
    json!({
        "status": "firing",
        "labels": {"alertname": "KubeNodeNotReady", "severity": "warning",
                   "job": "kube-state-metrics", "node": "worker-3"},
        "annotations": {"summary": "worker-3 is not ready"},
        "startsAt": "2026-11-28T05:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "0ddba11"
    })
}

fn resolved(mut a: Value) -> Value {
    a["status"] = "resolved".into();
    a["endsAt"] = "2026-11-28T05:10:00Z".into();
    a
}

/// Drives every signal path that audits (new, duplicate, resolved, a
/// cluster-scoped target, a Kubernetes event, a multi-alert webhook) and
/// validates every stored event against the reference's payload schema.
#[tokio::test]
async fn every_audit_event_of_every_signal_path_matches_the_reference_gateway_payload() {
    let validator = schema();
    let stack = start_stack().await;
    let gw = &stack.gw;
    let paths: Vec<(&str, &str, Value, u16)> = vec![
        (
            "new",
            PROMETHEUS,
            webhook(vec![alert("HighMemory", "payments", "api")]),
            201,
        ),
        (
            "duplicate",
            PROMETHEUS,
            webhook(vec![alert("HighMemory", "payments", "api")]),
            202,
        ),
        (
            "resolved",
            PROMETHEUS,
            webhook(vec![resolved(alert("HighMemory", "payments", "api"))]),
            200,
        ),
        (
            "cluster-scoped",
            PROMETHEUS,
            webhook(vec![node_alert()]),
            201,
        ),
        ("kubernetes-event", K8S_EVENT, warning_event("api-0"), 201),
        (
            "kubernetes-event repeat",
            K8S_EVENT,
            warning_event("api-0"),
            202,
        ),
        (
            "207",
            PROMETHEUS,
            webhook(vec![
                alert("HighCPU", "payments", "worker"),
                alert("HighLatency", "payments", "worker"),
            ]),
            207,
        ),
    ];
    for (what, path, body, status) in &paths {
        let resp = gw.post_json(path, body).await;
        assert_eq!(resp.status().as_u16(), *status, "{what}");
    }
    gw.audit.flush().await.unwrap();
    let events = audit_events(&stack.ds.url(), "event_category=gateway").await;
    let mut seen: Vec<String> = types(&events);
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [
            "gateway.crd.created",
            "gateway.signal.deduplicated",
            "gateway.signal.received",
            "gateway.signal.resolved"
        ]
    );
    let mut failures = Vec::new();
    for e in &events {
        for v in violations(&validator, e) {
            failures.push(format!("{} {}: {v}", e["event_type"], e["event_id"]));
        }
    }
    println!(
        "{} audit events of {} signal paths validated against the reference Gateway payload schema",
        events.len(),
        paths.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // What the reference's readers rebuild a RemediationRequest from.
    let received = events
        .iter()
        .find(|e| {
            e["event_type"] == "gateway.signal.received"
                && e["event_data"]["resource_name"] == "api"
        })
        .unwrap();
    let data = &received["event_data"];
    assert_eq!(data["signal_type"], "alert");
    assert_eq!(
        data["original_payload"]["labels"]["alertname"],
        "HighMemory"
    );
    assert_eq!(
        data["remediation_request"],
        format!(
            "{RR_NAMESPACE}/{}",
            received["correlation_id"].as_str().unwrap()
        )
    );
    // A cluster-scoped target has the empty namespace the reference sends.
    let node = events
        .iter()
        .find(|e| e["event_data"]["resource_kind"] == "Node")
        .unwrap();
    assert_eq!(node["event_data"]["namespace"], "");
    // The Kubernetes event's own JSON is its original payload.
    let k8s = events
        .iter()
        .find(|e| e["event_data"]["signal_source"] == "kubernetes-event")
        .unwrap();
    assert_eq!(k8s["event_data"]["original_payload"]["reason"], "BackOff");
}

#[tokio::test]
async fn a_failed_creation_is_audited_with_the_reference_error_details() {
    let validator = schema();
    common::install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds = common::start_datastorage(&dir.path().join("audit.db"), 0).await;
    let backend = Arc::new(common::refusing_backend::RefusingBackend(
        gateway::remediation::memory::MemoryBackend::new(Duration::from_secs(60)),
    ));
    let gw = common::start_gateway(common::gateway_config(&ds.url()), backend).await;
    let resp = gw
        .post_json(
            PROMETHEUS,
            &webhook(vec![alert("HighMemory", "payments", "api")]),
        )
        .await;
    assert_eq!(resp.status(), 503);
    gw.audit.flush().await.unwrap();
    let events = audit_events(&ds.url(), "event_category=gateway").await;
    assert_eq!(
        types(&events),
        ["gateway.signal.received", "gateway.crd.failed"]
    );
    for e in &events {
        let v = violations(&validator, e);
        assert!(v.is_empty(), "{}: {}", e["event_type"], v.join("\n"));
    }
    let details = &events[1]["event_data"]["error_details"];
    assert_eq!(details["component"], "gateway", "{details}");
    assert_eq!(details["code"], "backend_unavailable");
    assert_eq!(details["retry_possible"], true);
    assert!(details["message"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
}
