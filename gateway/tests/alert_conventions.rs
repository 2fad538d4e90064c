//! Alerts as real senders write them: kube-prometheus label sets (the scrape's
//! `job`, `instance`, `service`, `pod`… next to the target's own labels),
//! resolved alerts, Grafana and hand-written bodies, fleet alerts naming their
//! cluster, and Kubernetes Events dated by their body. Through HTTP, against the
//! memory backend and a real DataStorage.

mod common;

use common::{audit_events, start_stack, types, webhook};
use gateway::api::response::{MultiStatus, SignalResult};
use serde_json::{json, Value};

const PROMETHEUS: &str = "/api/v1/signals/prometheus";
const K8S_EVENT: &str = "/api/v1/signals/kubernetes-event";

/// Labels of a kube-state-metrics series as kube-prometheus-stack's Prometheus
/// stores them (ServiceMonitor with `honorLabels: true`): the scrape's identity
/// plus, for series without their own `pod`, the exporter's own Pod.
fn ksm_scrape() -> Value {
    json!({
        "job": "kube-state-metrics",
        "instance": "10.244.1.7:8080",
        "service": "kube-prometheus-stack-kube-state-metrics",
        "endpoint": "http",
        "container": "kube-state-metrics",
        "prometheus": "monitoring/kube-prometheus-stack-prometheus",
        "prometheus_replica": "prometheus-kube-prometheus-stack-prometheus-0",
    })
}

fn with(base: Value, extra: Value) -> Value {
    let mut labels = base;
    for (k, v) in extra.as_object().unwrap() {
        labels[k] = v.clone();
    }
    labels
}

fn firing(labels: Value) -> Value {
    json!({
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": "from a kube-prometheus rule"},
        "startsAt": "2026-11-28T05:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "0123456789abcdef"
    })
}

fn resolved(labels: Value) -> Value {
    let mut a = firing(labels);
    a["status"] = "resolved".into();
    a["endsAt"] = "2026-11-28T05:10:00Z".into();
    a
}

/// (alert labels, expected kind, namespace, name), label sets of real alerts of
/// the kubernetes-apps, kubernetes-system and node-exporter groups.
fn real_alerts() -> Vec<(Value, &'static str, Option<&'static str>, &'static str)> {
    vec![
        (
            with(
                ksm_scrape(),
                json!({"alertname": "KubePodCrashLooping", "severity": "warning",
                "namespace": "shop", "pod": "checkout-7d9f8b6c4-x2x4q", "container": "checkout",
                "reason": "CrashLoopBackOff", "uid": "5b1c6f2e-8a1d-4d0e-9f57-0c2d8e6a9b11"}),
            ),
            "Pod",
            Some("shop"),
            "checkout-7d9f8b6c4-x2x4q",
        ),
        (
            with(
                ksm_scrape(),
                json!({"alertname": "KubeDeploymentReplicasMismatch", "severity": "warning",
                "namespace": "shop", "deployment": "checkout",
                "pod": "kube-prometheus-stack-kube-state-metrics-6d8b4c9f5-lq2mz"}),
            ),
            "Deployment",
            Some("shop"),
            "checkout",
        ),
        (
            with(
                ksm_scrape(),
                json!({"alertname": "KubeStatefulSetReplicasMismatch", "severity": "warning",
                "namespace": "db", "statefulset": "postgres"}),
            ),
            "StatefulSet",
            Some("db"),
            "postgres",
        ),
        (
            with(
                ksm_scrape(),
                json!({"alertname": "KubeJobFailed", "severity": "warning",
                "namespace": "batch", "job_name": "nightly-report-28860480", "condition": "true"}),
            ),
            "Job",
            Some("batch"),
            "nightly-report-28860480",
        ),
        (
            with(
                ksm_scrape(),
                json!({"alertname": "KubeHpaMaxedOut", "severity": "warning",
                "namespace": "shop", "horizontalpodautoscaler": "checkout"}),
            ),
            "HorizontalPodAutoscaler",
            Some("shop"),
            "checkout",
        ),
        (
            with(
                ksm_scrape(),
                json!({"alertname": "KubeNodeNotReady", "severity": "warning",
                "node": "worker-2", "condition": "Ready", "status": "true"}),
            ),
            "Node",
            None,
            "worker-2",
        ),
        (
            // kube-prometheus relabels node-exporter's instance to the node name.
            json!({"alertname": "NodeFilesystemAlmostOutOfSpace", "severity": "warning",
                "job": "node-exporter", "instance": "worker-3", "container": "kube-rbac-proxy",
                "endpoint": "https", "namespace": "monitoring", "pod": "node-exporter-8xk2p",
                "service": "node-exporter", "prometheus": "monitoring/k8s",
                "device": "/dev/nvme0n1p1", "fstype": "ext4", "mountpoint": "/"}),
            "Node",
            None,
            "worker-3",
        ),
        (
            // Scraped with `honor_labels: false`: the target's labels renamed.
            json!({"alertname": "KubeContainerWaiting", "severity": "warning",
                "job": "kube-state-metrics", "namespace": "monitoring",
                "pod": "kube-state-metrics-5c9d7-abcde", "exported_namespace": "shop",
                "exported_pod": "cart-0", "exported_container": "cart"}),
            "Pod",
            Some("shop"),
            "cart-0",
        ),
    ]
}

#[tokio::test]
async fn real_alerts_name_their_own_target_never_the_scrape() {
    let stack = start_stack().await;
    for (labels, kind, namespace, name) in real_alerts() {
        let alertname = labels["alertname"].clone();
        let resp = stack
            .gw
            .post_json(PROMETHEUS, &webhook(vec![firing(labels)]))
            .await;
        assert_eq!(
            resp.status(),
            201,
            "{alertname}: {}",
            resp.text().await.unwrap()
        );
        let created: SignalResult = resp.json().await.unwrap();
        let rr = created.remediation_request.unwrap();
        let stored = stack.backend.get(&rr).unwrap();
        let target = &stored.request.target;
        assert_eq!(
            (
                target.kind.as_str(),
                target.namespace.as_deref(),
                target.name.as_str()
            ),
            (kind, namespace, name),
            "{alertname}"
        );
    }
    assert_eq!(stack.backend.requests().len(), real_alerts().len());
}

#[tokio::test]
async fn two_crash_looping_pods_of_one_namespace_are_two_requests() {
    let stack = start_stack().await;
    let pod = |name: &str| {
        firing(with(
            ksm_scrape(),
            json!({"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": name}),
        ))
    };
    let resp = stack
        .gw
        .post_json(
            PROMETHEUS,
            &webhook(vec![pod("checkout-a"), pod("checkout-b")]),
        )
        .await;
    assert_eq!(resp.status(), 207);
    let body: MultiStatus = resp.json().await.unwrap();
    assert_eq!(body.summary.created, 2, "{body:?}");
    assert_eq!(stack.backend.requests().len(), 2);
}

fn crash_looping() -> Value {
    json!({"alertname": "KubePodCrashLooping", "severity": "warning", "job": "kube-state-metrics",
        "namespace": "shop", "pod": "checkout-0"})
}

#[tokio::test]
async fn a_resolved_alert_without_an_active_request_is_ignored_with_200() {
    let stack = start_stack().await;
    let resp = stack
        .gw
        .post_json(PROMETHEUS, &webhook(vec![resolved(crash_looping())]))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ignored");
    assert!(stack.backend.requests().is_empty());
}

#[tokio::test]
async fn a_resolved_alert_is_recorded_on_its_active_request_and_creates_nothing() {
    let stack = start_stack().await;
    let gw = &stack.gw;
    let created: SignalResult = gw
        .post_json(PROMETHEUS, &webhook(vec![firing(crash_looping())]))
        .await
        .json()
        .await
        .unwrap();
    let rr = created.remediation_request.unwrap();

    let resp = gw
        .post_json(PROMETHEUS, &webhook(vec![resolved(crash_looping())]))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["remediation_request"], rr.as_str());
    let stored = stack.backend.requests();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].occurrence_count, 1,
        "a resolution is no occurrence"
    );

    gw.audit.flush().await.unwrap();
    let trail = audit_events(&stack.ds.url(), &format!("correlation_id={rr}")).await;
    assert_eq!(
        types(&trail),
        [
            "gateway.signal.received",
            "gateway.crd.created",
            "gateway.signal.resolved"
        ]
    );
    assert_eq!(trail[2]["event_data"]["resource_name"], "checkout-0");

    let metrics = gw
        .client
        .get(format!("http://{}/metrics", gw.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_signals_resolved_total{source=\"prometheus\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn in_a_207_a_resolved_alert_is_never_rejected_even_without_a_target() {
    let stack = start_stack().await;
    let no_target = json!({"alertname": "Watchdog", "job": "prometheus", "severity": "none"});
    let resp = stack
        .gw
        .post_json(
            PROMETHEUS,
            &webhook(vec![resolved(no_target), resolved(crash_looping())]),
        )
        .await;
    assert_eq!(resp.status(), 207);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["summary"]["rejected"], 0, "{body}");
    assert_eq!(body["summary"]["ignored"], 2, "{body}");
    assert!(stack.backend.requests().is_empty());
}

#[tokio::test]
async fn bodies_without_version_or_from_grafana_with_null_maps_are_accepted() {
    let stack = start_stack().await;
    let mut no_version = webhook(vec![firing(crash_looping())]);
    no_version.as_object_mut().unwrap().remove("version");
    let resp = stack.gw.post_json(PROMETHEUS, &no_version).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    // Grafana's webhook: version "1", null maps, the target only in commonLabels.
    let grafana = json!({
        "receiver": "gateway", "status": "firing", "orgId": 1, "version": "1",
        "groupKey": "{}:{alertname=\"HighLatency\"}", "truncatedAlerts": 0,
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency", "namespace": "shop", "deployment": "cart",
            "severity": "critical"},
        "commonAnnotations": null,
        "externalURL": "http://grafana:3000/",
        "alerts": [{"status": "firing", "labels": null, "annotations": null,
            "startsAt": "2026-11-28T05:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "a1b2", "silenceURL": "", "dashboardURL": "", "panelURL": ""}]
    });
    let resp = stack.gw.post_json(PROMETHEUS, &grafana).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let created: SignalResult = resp.json().await.unwrap();
    let stored = stack
        .backend
        .get(&created.remediation_request.unwrap())
        .unwrap();
    assert_eq!(stored.request.target.kind, "Deployment");
    assert_eq!(stored.request.target.name, "cart");
    assert_eq!(stored.request.signal.severity, "critical");
}

#[tokio::test]
async fn an_alerts_own_labels_win_over_common_labels() {
    let stack = start_stack().await;
    let mut body = webhook(vec![firing(
        json!({"alertname": "A", "deployment": "cart"}),
    )]);
    body["commonLabels"] = json!({"alertname": "A", "namespace": "shop", "deployment": "other",
        "severity": "info"});
    let resp = stack.gw.post_json(PROMETHEUS, &body).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let stored = stack.backend.requests();
    assert_eq!(stored[0].request.target.name, "cart");
    assert_eq!(stored[0].request.target.namespace.as_deref(), Some("shop"));
    assert_eq!(stored[0].request.signal.severity, "info");
}

#[tokio::test]
async fn fleet_alerts_from_two_clusters_never_join_one_request() {
    let stack = start_stack().await;
    let in_cluster = |cluster: &str| {
        let mut labels = crash_looping();
        labels["cluster"] = cluster.into();
        firing(labels)
    };
    let east: SignalResult = stack
        .gw
        .post_json(PROMETHEUS, &webhook(vec![in_cluster("east")]))
        .await
        .json()
        .await
        .unwrap();
    let west = stack
        .gw
        .post_json(PROMETHEUS, &webhook(vec![in_cluster("west")]))
        .await;
    assert_eq!(west.status(), 201);
    let west: SignalResult = west.json().await.unwrap();
    assert_ne!(east.fingerprint, west.fingerprint);
    assert_eq!(stack.backend.requests().len(), 2);
}

fn event_at(times: Value) -> Value {
    let mut event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "api-0.187a", "namespace": "payments"},
        "type": "Warning", "reason": "BackOff",
        "message": "Back-off restarting failed container api",
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "api-0", "namespace": "payments"},
        "source": {"component": "kubelet", "host": "worker-1"},
    });
    for (k, v) in times.as_object().unwrap() {
        event[k] = v.clone();
    }
    event
}

#[tokio::test]
async fn a_kubernetes_event_older_than_max_signal_age_by_its_body_is_stale() {
    let stack = start_stack().await;
    let now = chrono::Utc::now();
    let old = (now - chrono::Duration::hours(2)).to_rfc3339();
    let fresh = (now - chrono::Duration::seconds(10)).to_rfc3339();
    for (name, times) in [
        (
            "lastTimestamp",
            json!({"firstTimestamp": old, "lastTimestamp": old}),
        ),
        (
            "eventTime",
            json!({"eventTime": old, "lastTimestamp": null}),
        ),
        (
            "series.lastObservedTime",
            json!({"eventTime": old, "series": {"count": 3, "lastObservedTime": old}}),
        ),
    ] {
        let resp = stack.gw.post_json(K8S_EVENT, &event_at(times)).await;
        assert_eq!(resp.status(), 400, "{name}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(
            problem["type"], "https://kubernaut.ai/problems/stale-signal",
            "{name}"
        );
    }
    assert!(stack.backend.requests().is_empty());
    // An old series whose last observation is fresh is a live signal.
    let resp = stack
        .gw
        .post_json(
            K8S_EVENT,
            &event_at(json!({"eventTime": old, "series": {"count": 9, "lastObservedTime": fresh}})),
        )
        .await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

#[tokio::test]
async fn a_webhook_with_one_backend_failure_answers_503_and_its_retry_creates_each_request_once() {
    common::install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds = common::start_datastorage(&dir.path().join("audit.db"), 0).await;
    let memory = std::sync::Arc::new(gateway::remediation::memory::MemoryBackend::new(
        std::time::Duration::from_secs(60),
    ));
    // The first creation commits and then fails, as an API server timing out.
    let backend = std::sync::Arc::new(common::flaky_backend::FlakyBackend::new(
        memory.clone(),
        0,
        1,
    ));
    let gw = common::start_gateway(common::gateway_config(&ds.url()), backend).await;
    let pod = |name: &str| {
        firing(
            json!({"alertname": "KubePodCrashLooping", "job": "kube-state-metrics",
            "namespace": "shop", "pod": name}),
        )
    };
    let body = webhook(vec![pod("a-0"), pod("b-0")]);
    let resp = gw.post_json(PROMETHEUS, &body).await;
    assert_eq!(
        resp.status(),
        503,
        "a 207 would tell Alertmanager everything was delivered"
    );
    assert!(resp.headers().contains_key("retry-after"));
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["errors"][0]["index"], 0, "{problem}");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 1, "{problem}");

    let retry = gw.post_json(PROMETHEUS, &body).await;
    assert_eq!(retry.status(), 207);
    let result: MultiStatus = retry.json().await.unwrap();
    assert_eq!(result.summary.duplicate, 2, "{result:?}");
    assert_eq!(
        memory.requests().len(),
        2,
        "one request per Pod, none twice"
    );
}
