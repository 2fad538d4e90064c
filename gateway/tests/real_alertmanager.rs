//! The Gateway on real signals: a real Prometheus scrapes a kube-state-metrics
//! shaped exposition (job `kube-state-metrics`, every 1 s) and a node-exporter
//! one, evaluates rules modelled on kube-prometheus (kubernetes-apps,
//! kubernetes-system, node-exporter groups), and a real Alertmanager
//! (`send_resolved: true`) delivers to a real Gateway (memory backend) auditing
//! into a real DataStorage.
//!
//! Every wait is on a readiness endpoint or on the awaited outcome.

mod common;
mod monitoring;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::flaky_backend::FlakyBackend;
use common::{audit_events, gateway_config, start_datastorage, start_gateway, wait_status};
use gateway::remediation::memory::MemoryBackend;
use monitoring::{binaries_or_skip, eventually, Exporter, Monitoring, Setup};
use serde_json::Value;

/// Rules modelled on kube-prometheus's; `for` dropped so the test is fast.
const RULES: &str = r#"groups:
  - name: kubernetes-apps
    rules:
      - alert: KubePodCrashLooping
        expr: kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff", job="kube-state-metrics"} >= 1
        labels: {severity: warning}
        annotations:
          description: 'Pod {{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.container }}) is in waiting state (reason: "CrashLoopBackOff").'
          summary: Pod is crash looping.
      - alert: KubeDeploymentReplicasMismatch
        expr: kube_deployment_spec_replicas{job="kube-state-metrics"} > kube_deployment_status_replicas_available{job="kube-state-metrics"}
        labels: {severity: warning}
        annotations:
          summary: Deployment has not matched the expected number of replicas.
      - alert: KubeStatefulSetReplicasMismatch
        expr: kube_statefulset_status_replicas_ready{job="kube-state-metrics"} != kube_statefulset_status_replicas{job="kube-state-metrics"}
        labels: {severity: warning}
        annotations:
          summary: StatefulSet has not matched the expected number of replicas.
      - alert: KubeJobFailed
        expr: kube_job_failed{job="kube-state-metrics"} > 0
        labels: {severity: warning}
        annotations:
          summary: Job failed to complete.
  - name: kubernetes-system
    rules:
      - alert: KubeNodeNotReady
        expr: kube_node_status_condition{job="kube-state-metrics",condition="Ready",status="true"} == 0
        labels: {severity: warning}
        annotations:
          summary: Node is not ready.
  - name: node-exporter
    rules:
      - alert: NodeFilesystemAlmostOutOfSpace
        expr: node_filesystem_avail_bytes{job="node-exporter",fstype!=""} / node_filesystem_size_bytes{job="node-exporter",fstype!=""} * 100 < 5
        labels: {severity: warning}
        annotations:
          summary: Filesystem has less than 5% space left.
"#;

const POD_A: &str = "checkout-7d9f8b6c4-x2x4q";
const POD_B: &str = "checkout-7d9f8b6c4-5kq9z";

/// kube-state-metrics series: `broken` makes every rule fire.
fn ksm(broken: bool) -> String {
    let b = |bad: &str, good: &str| {
        if broken {
            bad.to_owned()
        } else {
            good.to_owned()
        }
    };
    format!(
        r#"# TYPE kube_pod_container_status_waiting_reason gauge
kube_pod_container_status_waiting_reason{{namespace="shop",pod="{POD_A}",uid="5b1c6f2e",container="checkout",reason="CrashLoopBackOff"}} {crash}
kube_pod_container_status_waiting_reason{{namespace="shop",pod="{POD_B}",uid="9a3d0c1b",container="checkout",reason="CrashLoopBackOff"}} {crash}
# TYPE kube_deployment_spec_replicas gauge
kube_deployment_spec_replicas{{namespace="shop",deployment="checkout"}} 3
# TYPE kube_deployment_status_replicas_available gauge
kube_deployment_status_replicas_available{{namespace="shop",deployment="checkout"}} {available}
# TYPE kube_statefulset_status_replicas gauge
kube_statefulset_status_replicas{{namespace="db",statefulset="postgres"}} 3
# TYPE kube_statefulset_status_replicas_ready gauge
kube_statefulset_status_replicas_ready{{namespace="db",statefulset="postgres"}} {ready}
# TYPE kube_job_failed gauge
kube_job_failed{{namespace="batch",job_name="nightly-report-28860480",condition="true"}} {failed}
# TYPE kube_node_status_condition gauge
kube_node_status_condition{{node="worker-2",condition="Ready",status="true"}} {node_ready}
"#,
        crash = b("1", "0"),
        available = b("1", "3"),
        ready = b("1", "3"),
        failed = b("1", "0"),
        node_ready = b("0", "1"),
    )
}

/// node-exporter series: `broken` leaves 2% of `/` free.
fn node(broken: bool) -> String {
    format!(
        r#"# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{{device="/dev/nvme0n1p1",fstype="ext4",mountpoint="/"}} {avail}
# TYPE node_filesystem_size_bytes gauge
node_filesystem_size_bytes{{device="/dev/nvme0n1p1",fstype="ext4",mountpoint="/"}} 100000000000
"#,
        avail = if broken { "2000000000" } else { "60000000000" }
    )
}

/// The target every rule's alert is about: (kind, namespace, name).
fn expected_targets() -> BTreeSet<(String, String, String)> {
    [
        ("Pod", "shop", POD_A),
        ("Pod", "shop", POD_B),
        ("Deployment", "shop", "checkout"),
        ("StatefulSet", "db", "postgres"),
        ("Job", "batch", "nightly-report-28860480"),
        ("Node", "", "worker-2"),
        ("Node", "", "worker-3"),
    ]
    .into_iter()
    .map(|(k, n, m)| (k.to_owned(), n.to_owned(), m.to_owned()))
    .collect()
}

fn target_of(event: &Value) -> (String, String, String) {
    let d = &event["event_data"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    (
        s(&d["resource_kind"]),
        s(&d["namespace"]),
        s(&d["resource_name"]),
    )
}

#[tokio::test]
async fn real_alerts_become_requests_about_their_targets_and_resolve_without_failed_notifications()
{
    let Some((prometheus_bin, alertmanager_bin)) =
        binaries_or_skip("real_alerts_become_requests_about_their_targets")
    else {
        return;
    };
    let started = Instant::now();
    common::install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds = start_datastorage(&dir.path().join("audit.db"), 0).await;
    let backend = Arc::new(MemoryBackend::new(Duration::from_secs(300)));
    let gw = start_gateway(gateway_config(&ds.url()), backend.clone()).await;
    wait_status(&format!("http://{}/readyz", gw.health), 200).await;
    let exporter = Exporter::start(&ksm(true), &node(true)).await;
    let mon = Monitoring::start(Setup {
        prometheus_bin: &prometheus_bin,
        alertmanager_bin: &alertmanager_bin,
        exporter: exporter.addr.to_string(),
        rules: RULES,
        webhook_url: gw.url("/api/v1/signals/prometheus"),
    })
    .await;

    // Every rule fires: one request per target, each target as the alert names it.
    let expected = expected_targets();
    let created = eventually(Duration::from_secs(60), "a request per target", || async {
        let created = audit_events(&ds.url(), "event_type=gateway.crd.created").await;
        let targets: BTreeSet<_> = created.iter().map(target_of).collect();
        if targets.len() >= expected.len() {
            Ok(created)
        } else {
            Err(format!("targets {targets:?}"))
        }
    })
    .await;
    let targets: BTreeSet<_> = created.iter().map(target_of).collect();
    assert_eq!(targets, expected, "targets from the audit trail");
    assert_eq!(created.len(), expected.len(), "one request per target");
    assert_eq!(backend.requests().len(), expected.len());

    // Healthy again: every alert resolves, each resolution recorded on its request.
    exporter.set(&ksm(false), &node(false));
    let requests: BTreeSet<String> = created
        .iter()
        .map(|e| e["correlation_id"].as_str().unwrap().to_owned())
        .collect();
    let resolved = eventually(
        Duration::from_secs(60),
        "a gateway.signal.resolved on every request",
        || async {
            let resolved = audit_events(&ds.url(), "event_type=gateway.signal.resolved").await;
            let on: BTreeSet<String> = resolved
                .iter()
                .map(|e| e["correlation_id"].as_str().unwrap().to_owned())
                .collect();
            if on == requests {
                Ok(resolved)
            } else {
                Err(format!("resolved on {on:?} of {requests:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        backend.requests().len(),
        expected.len(),
        "resolving created nothing"
    );

    // Alertmanager's own account: firing and resolved notifications, none failed.
    // One group per alertname (6), each notified firing then resolved.
    let groups = 6.0;
    let total = eventually(
        Duration::from_secs(30),
        "Alertmanager to count the resolved notifications",
        || async {
            let n = mon
                .alertmanager_counter("alertmanager_notifications_total", "webhook")
                .await;
            if n >= 2.0 * groups {
                Ok(n)
            } else {
                Err(format!("{n} notifications"))
            }
        },
    )
    .await;
    let failed = mon
        .alertmanager_counter("alertmanager_notifications_failed_total", "webhook")
        .await;
    let requests_failed = mon
        .alertmanager_counter("alertmanager_notification_requests_failed_total", "webhook")
        .await;
    println!(
        "real Prometheus + Alertmanager: {} requests, {} resolutions recorded, {total} webhook notifications, {failed} failed, {requests_failed} failed requests, {:.1}s",
        created.len(),
        resolved.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        failed, 0.0,
        "alertmanager_notifications_failed_total{{integration=\"webhook\"}}"
    );
    assert_eq!(requests_failed, 0.0);
    drop(mon);
    gw.shutdown().await;
    ds.shutdown().await;
}

/// Only the Job failure fires.
fn only_job_failed(failed: bool) -> String {
    format!(
        "# TYPE kube_job_failed gauge\nkube_job_failed{{namespace=\"batch\",job_name=\"nightly-report-28860480\",condition=\"true\"}} {}\n",
        if failed { 1 } else { 0 }
    )
}

#[tokio::test]
async fn alertmanager_retries_through_backend_503s_and_exactly_one_request_exists() {
    let Some((prometheus_bin, alertmanager_bin)) =
        binaries_or_skip("alertmanager_retries_through_backend_503s")
    else {
        return;
    };
    common::install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds = start_datastorage(&dir.path().join("audit.db"), 0).await;
    let memory = Arc::new(MemoryBackend::new(Duration::from_secs(300)));
    // First delivery: find_active fails. Second: create commits, then fails.
    let backend = Arc::new(FlakyBackend::new(memory.clone(), 1, 1));
    let gw = start_gateway(gateway_config(&ds.url()), backend.clone()).await;
    wait_status(&format!("http://{}/readyz", gw.health), 200).await;
    let exporter = Exporter::start(&only_job_failed(true), "").await;
    let mon = Monitoring::start(Setup {
        prometheus_bin: &prometheus_bin,
        alertmanager_bin: &alertmanager_bin,
        exporter: exporter.addr.to_string(),
        rules: RULES,
        webhook_url: gw.url("/api/v1/signals/prometheus"),
    })
    .await;

    // Alertmanager got two 503s and retried until the Gateway answered 2xx.
    eventually(
        Duration::from_secs(60),
        "a delivery after the 503s",
        || async {
            let delivered = mon
                .alertmanager_counter("alertmanager_notifications_total", "webhook")
                .await;
            let answered_503 = mon
                .alertmanager_counter("alertmanager_notification_requests_failed_total", "webhook")
                .await;
            let requests = mon
                .alertmanager_counter("alertmanager_notification_requests_total", "webhook")
                .await;
            if delivered >= 1.0 && answered_503 >= 2.0 && requests >= answered_503 + 1.0 {
                Ok(())
            } else {
                Err(format!(
                    "{delivered} notifications, {requests} requests, {answered_503} failed requests"
                ))
            }
        },
    )
    .await;
    assert_eq!(backend.failed.load(Ordering::SeqCst), 2);

    // Resolve, so every delivery about the firing alert is behind us.
    exporter.set(&only_job_failed(false), "");
    let resolved = eventually(Duration::from_secs(60), "the resolution", || async {
        let r = audit_events(&ds.url(), "event_type=gateway.signal.resolved").await;
        if r.is_empty() {
            Err("no gateway.signal.resolved yet".to_owned())
        } else {
            Ok(r)
        }
    })
    .await;

    let stored = memory.requests();
    assert_eq!(
        stored.len(),
        1,
        "exactly one request after the retries: {stored:?}"
    );
    assert_eq!(stored[0].request.target.kind, "Job");
    assert_eq!(stored[0].request.target.name, "nightly-report-28860480");
    // The delivery after the lost answer found the committed request.
    assert_eq!(stored[0].occurrence_count, 2);
    assert_eq!(resolved[0]["correlation_id"], stored[0].name.as_str());
    let failed = mon
        .alertmanager_counter("alertmanager_notifications_failed_total", "webhook")
        .await;
    let requests_failed = mon
        .alertmanager_counter("alertmanager_notification_requests_failed_total", "webhook")
        .await;
    println!(
        "503 retries: {} backend failures, {requests_failed} webhook requests answered 5xx, {failed} notifications failed, {} request(s), occurrence count {}",
        backend.failed.load(Ordering::SeqCst),
        stored.len(),
        stored[0].occurrence_count
    );
    assert_eq!(failed, 0.0, "Alertmanager gave up on a notification");
    drop(mon);
    gw.shutdown().await;
    ds.shutdown().await;
}
