//! One [`Signal`] type for every source, parsed from the sources' own formats.
//!
//! Parsing is where an input is accepted or refused: a `Signal` always has a
//! name, a severity and a target, so nothing downstream re-checks them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::config::SignalsConfig;

/// Where a signal came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalSource {
    /// An AlertManager webhook (Prometheus alert).
    Prometheus,
    /// A core/v1 Event of type `Warning`.
    KubernetesEvent,
}

impl SignalSource {
    /// The stable name used in metrics labels, audit payloads and the CRD.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prometheus => "prometheus",
            Self::KubernetesEvent => "kubernetes-event",
        }
    }
}

/// The Kubernetes object a signal is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceRef {
    /// Namespace; `None` for cluster-scoped kinds such as `Node`.
    pub namespace: Option<String>,
    /// Kind (`Deployment`, `Pod`, `Node`, …).
    pub kind: String,
    /// Object name.
    pub name: String,
}

impl ResourceRef {
    /// A reference to `kind/name` in `namespace`.
    pub fn new(namespace: Option<&str>, kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.map(str::to_owned),
            kind: kind.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// A signal, whatever its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Alert name or event reason.
    pub name: String,
    /// The `severity` label, `warning` for Kubernetes events, else `unknown`.
    pub severity: String,
    /// Source format.
    pub source: SignalSource,
    /// What the signal is about, as the source named it.
    pub target: ResourceRef,
    /// Labels (AlertManager) or derived labels (events).
    pub labels: BTreeMap<String, String>,
    /// Annotations (AlertManager) or the event message.
    pub annotations: BTreeMap<String, String>,
    /// When the condition started, when the source says.
    pub firing_time: Option<DateTime<Utc>>,
    /// When the Gateway received it.
    pub received_time: DateTime<Utc>,
    /// The source's own JSON for this signal (one alert, or the event).
    pub payload: Value,
}

/// Why an input is not a usable signal, phrased for its sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidSignal {
    /// The offending field, dotted (`alerts[1].labels.alertname`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl InvalidSignal {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Severity used when a signal carries none.
pub const UNKNOWN_SEVERITY: &str = "unknown";

/// Webhook `version`s accepted: Alertmanager's `"4"`, Grafana's legacy `"1"`;
/// a body without `version` (other senders) is read as v4.
const ACCEPTED_VERSIONS: &[&str] = &["4", "1"];

/// One alert of a webhook, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    /// The condition holds: a remediation may start.
    Firing(Signal),
    /// The condition cleared: never starts a remediation.
    Resolved(Signal),
    /// A resolved alert whose labels name no target: no request can be active
    /// for it, so there is nothing to do (and nothing for the sender to fix).
    ResolvedWithoutTarget(InvalidSignal),
}

/// The AlertManager webhook envelope; alerts stay raw so each is parsed (and
/// refused) on its own. Null maps are read as empty (Grafana and hand-written
/// senders send them).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: Option<String>,
    alerts: Option<Vec<Value>>,
    #[serde(default)]
    common_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    common_annotations: Option<BTreeMap<String, String>>,
}

/// One alert of a webhook.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAlert {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    starts_at: Option<DateTime<Utc>>,
}

/// Splits an AlertManager webhook into its alerts, each parsed on its own
/// with the label table of `config`.
///
/// The outer error refuses the whole body (not a webhook, no alerts); an
/// inner error refuses one alert while its neighbours go ahead.
pub fn parse_webhook(
    body: Value,
    received_time: DateTime<Utc>,
    config: &SignalsConfig,
) -> Result<Vec<Result<Alert, InvalidSignal>>, InvalidSignal> {
    let webhook: Webhook = serde_json::from_value(body)
        .map_err(|e| InvalidSignal::new("", format!("not an AlertManager webhook: {e}")))?;
    match webhook.version.as_deref() {
        None => {}
        Some(v) if ACCEPTED_VERSIONS.contains(&v) => {}
        Some(v) => {
            return Err(InvalidSignal::new(
                "version",
                format!("must be \"4\" (AlertManager webhook v4) or \"1\" (Grafana), got {v:?}"),
            ))
        }
    }
    let alerts = webhook
        .alerts
        .filter(|a| !a.is_empty())
        .ok_or_else(|| InvalidSignal::new("alerts", "must hold at least one alert"))?;
    let common = Common {
        labels: webhook.common_labels.unwrap_or_default(),
        annotations: webhook.common_annotations.unwrap_or_default(),
    };
    Ok(alerts
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            parse_alert(raw, &common, received_time, config)
                .map_err(|e| e.within(&format!("alerts[{i}]")))
        })
        .collect())
}

/// The firing alerts of a webhook under the default label table; a resolved
/// alert is refused here. For tools and tests; the Gateway uses [`parse_webhook`].
pub fn parse_alertmanager(
    body: Value,
    received_time: DateTime<Utc>,
) -> Result<Vec<Result<Signal, InvalidSignal>>, InvalidSignal> {
    Ok(
        parse_webhook(body, received_time, &SignalsConfig::default())?
            .into_iter()
            .enumerate()
            .map(|(i, alert)| match alert? {
                Alert::Firing(signal) => Ok(signal),
                Alert::Resolved(_) | Alert::ResolvedWithoutTarget(_) => Err(InvalidSignal::new(
                    format!("alerts[{i}].status"),
                    "a resolved alert does not start a remediation",
                )),
            })
            .collect(),
    )
}

impl InvalidSignal {
    fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// What a webhook says about all of its alerts.
struct Common {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// Merges `common` under `own`: the alert's own entries win.
fn merged(
    common: &BTreeMap<String, String>,
    own: Option<BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut all = common.clone();
    all.extend(own.unwrap_or_default());
    all
}

fn parse_alert(
    raw: Value,
    common: &Common,
    received_time: DateTime<Utc>,
    config: &SignalsConfig,
) -> Result<Alert, InvalidSignal> {
    let alert: RawAlert = match serde_json::from_value(raw.clone()) {
        Ok(alert) => alert,
        Err(e) => {
            let e = InvalidSignal::new("", format!("not an AlertManager alert: {e}"));
            // Even an unreadable resolved alert can start nothing: never `rejected`.
            return match raw.get("status").and_then(Value::as_str) {
                Some("resolved") => Ok(Alert::ResolvedWithoutTarget(e)),
                _ => Err(e),
            };
        }
    };
    let resolved = match alert.status.as_deref() {
        Some("resolved") => true,
        None | Some("firing") => false,
        Some(other) => {
            return Err(InvalidSignal::new(
                "status",
                format!("must be \"firing\" or \"resolved\", got {other:?}"),
            ))
        }
    };
    let labels = merged(&common.labels, alert.labels);
    let annotations = merged(&common.annotations, alert.annotations);
    let identified = non_empty(labels.get("alertname"))
        .ok_or_else(|| InvalidSignal::new("labels.alertname", "is required"))
        .and_then(|name| Ok((name, target_of(&labels, config)?)));
    let (name, target) = match identified {
        Ok(found) => found,
        Err(e) if resolved => return Ok(Alert::ResolvedWithoutTarget(e)),
        Err(e) => return Err(e),
    };
    let signal = Signal {
        severity: non_empty(labels.get("severity"))
            .unwrap_or(UNKNOWN_SEVERITY)
            .to_owned(),
        name: name.to_owned(),
        source: SignalSource::Prometheus,
        target,
        firing_time: alert.starts_at,
        received_time,
        labels,
        annotations,
        payload: raw,
    };
    Ok(if resolved {
        Alert::Resolved(signal)
    } else {
        Alert::Firing(signal)
    })
}

/// The target an alert's labels name, by the first matching row of the table.
pub fn target_of(
    labels: &BTreeMap<String, String>,
    config: &SignalsConfig,
) -> Result<ResourceRef, InvalidSignal> {
    let job = non_empty(labels.get("job"));
    let row = config
        .target_labels
        .iter()
        .filter(|row| row.jobs.is_empty() || job.is_some_and(|j| row.jobs.iter().any(|r| r == j)))
        .find_map(|row| non_empty(labels.get(&row.label)).map(|name| (row, name)));
    let Some((row, name)) = row else {
        let names: Vec<&str> = config
            .target_labels
            .iter()
            .map(|r| r.label.as_str())
            .collect();
        return Err(InvalidSignal::new(
            "labels",
            format!(
                "names no target resource: expected one of {} (signals.target_labels; \
                 scrape labels such as job, instance and service never name a target)",
                names.join(", ")
            ),
        ));
    };
    if !is_object_name(name) {
        return Err(InvalidSignal::new(
            format!("labels.{}", row.label),
            format!(
                "{name:?} is not a Kubernetes object name, so it cannot name a {} \
                 (relabel it, or adapt signals.target_labels)",
                row.kind
            ),
        ));
    }
    if row.cluster_scoped {
        return Ok(ResourceRef::new(None, row.kind.clone(), name));
    }
    let namespace = config
        .namespace_labels
        .iter()
        .find_map(|l| non_empty(labels.get(l)))
        .ok_or_else(|| {
            InvalidSignal::new(
                "labels.namespace",
                format!(
                    "is required for a {} target (from label {}; looked in {})",
                    row.kind,
                    row.label,
                    config.namespace_labels.join(", ")
                ),
            )
        })?;
    Ok(ResourceRef::new(Some(namespace), row.kind.clone(), name))
}

/// A DNS-1123 subdomain: what every kind the table names accepts as a name
/// (a scrape address such as `10.0.0.3:9100` is not one).
fn is_object_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn non_empty(v: Option<&String>) -> Option<&str> {
    v.map(String::as_str).filter(|s| !s.trim().is_empty())
}

/// The fields of a core/v1 Event the Gateway reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    metadata: EventMeta,
    #[serde(rename = "type", default)]
    event_type: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
    involved_object: Option<ObjectRef>,
    #[serde(default)]
    first_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    event_time: Option<DateTime<Utc>>,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    source: Option<EventSource>,
}

#[derive(Debug, Default, Deserialize)]
struct EventMeta {
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ObjectRef {
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EventSource {
    component: Option<String>,
}

/// The times a core/v1 Event says it was last observed.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTimes {
    #[serde(default)]
    last_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    event_time: Option<DateTime<Utc>>,
    #[serde(default)]
    series: Option<EventSeries>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventSeries {
    #[serde(default)]
    last_observed_time: Option<DateTime<Utc>>,
}

/// When an Event was last observed, by its own body: the newest of
/// `lastTimestamp`, `eventTime` and `series.lastObservedTime`; `None` when it
/// carries none of them (or they are not RFC 3339).
pub fn event_last_observed(body: &Value) -> Option<DateTime<Utc>> {
    let times = EventTimes::deserialize(body).unwrap_or_default();
    [
        times.last_timestamp,
        times.event_time,
        times.series.and_then(|s| s.last_observed_time),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// Kinds that are cluster-scoped, so their events carry no namespace for them.
const CLUSTER_SCOPED_KINDS: &[&str] = &["Node", "PersistentVolume", "Namespace"];

/// Parses a core/v1 Event; only `Warning` events are signals.
pub fn parse_kubernetes_event(
    body: Value,
    received_time: DateTime<Utc>,
) -> Result<Signal, InvalidSignal> {
    let event: Event = serde_json::from_value(body.clone())
        .map_err(|e| InvalidSignal::new("", format!("not a core/v1 Event: {e}")))?;
    match event.event_type.as_deref() {
        Some("Warning") => {}
        Some(other) => {
            return Err(InvalidSignal::new(
                "type",
                format!("only Warning events are signals, got {other:?}"),
            ))
        }
        None => return Err(InvalidSignal::new("type", "is required (Warning)")),
    }
    let object = event
        .involved_object
        .ok_or_else(|| InvalidSignal::new("involvedObject", "is required"))?;
    let kind = non_empty(object.kind.as_ref())
        .ok_or_else(|| InvalidSignal::new("involvedObject.kind", "is required"))?;
    let name = non_empty(object.name.as_ref())
        .ok_or_else(|| InvalidSignal::new("involvedObject.name", "is required"))?;
    let reason = non_empty(event.reason.as_ref())
        .ok_or_else(|| InvalidSignal::new("reason", "is required"))?;
    let namespace = if CLUSTER_SCOPED_KINDS.contains(&kind) {
        None
    } else {
        Some(
            non_empty(object.namespace.as_ref())
                .or_else(|| non_empty(event.metadata.namespace.as_ref()))
                .ok_or_else(|| {
                    InvalidSignal::new("involvedObject.namespace", "is required for this kind")
                })?,
        )
    };
    let mut labels = BTreeMap::from([
        ("reason".to_owned(), reason.to_owned()),
        ("kind".to_owned(), kind.to_owned()),
    ]);
    if let Some(component) = event.source.and_then(|s| s.component) {
        labels.insert("source_component".to_owned(), component);
    }
    if let Some(count) = event.count {
        labels.insert("count".to_owned(), count.to_string());
    }
    let mut annotations = BTreeMap::new();
    if let Some(message) = event.message {
        annotations.insert("message".to_owned(), message);
    }
    Ok(Signal {
        name: reason.to_owned(),
        severity: "warning".to_owned(),
        source: SignalSource::KubernetesEvent,
        target: ResourceRef::new(namespace, kind, name),
        labels,
        annotations,
        firing_time: event.first_timestamp.or(event.event_time),
        received_time,
        payload: body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn webhook(alerts: Value) -> Value {
        json!({"version": "4", "status": "firing", "receiver": "gateway", "alerts": alerts})
    }

    fn one(labels: Value) -> Result<Signal, InvalidSignal> {
        let mut all = parse_alertmanager(
            webhook(
                json!([{"status": "firing", "labels": labels, "annotations": {"summary": "s"},
                "startsAt": "2026-11-28T05:00:00Z"}]),
            ),
            Utc::now(),
        )
        .unwrap();
        all.remove(0)
    }

    #[test]
    fn an_alert_becomes_a_signal_about_its_workload() {
        let s = one(json!({"alertname": "HighMemory", "severity": "critical",
            "namespace": "payments", "deployment": "api", "pod": "api-7d9-x"}))
        .unwrap();
        assert_eq!(s.name, "HighMemory");
        assert_eq!(s.severity, "critical");
        assert_eq!(s.source, SignalSource::Prometheus);
        assert_eq!(
            s.target,
            ResourceRef::new(Some("payments"), "Deployment", "api")
        );
        assert_eq!(s.annotations["summary"], "s");
        assert!(s.firing_time.is_some());
    }

    #[test]
    fn exported_namespace_wins_and_severity_defaults_to_unknown() {
        let s = one(json!({"alertname": "A", "namespace": "monitoring",
            "exported_namespace": "payments", "pod": "api-0"}))
        .unwrap();
        assert_eq!(s.target, ResourceRef::new(Some("payments"), "Pod", "api-0"));
        assert_eq!(s.severity, UNKNOWN_SEVERITY);
    }

    #[test]
    fn a_node_alert_needs_no_namespace() {
        let s = one(json!({"alertname": "NodeDown", "node": "worker-1"})).unwrap();
        assert_eq!(s.target, ResourceRef::new(None, "Node", "worker-1"));
    }

    #[test]
    fn alerts_without_name_target_or_namespace_are_refused_by_field() {
        let e = one(json!({"namespace": "p", "pod": "x"})).unwrap_err();
        assert_eq!(e.field, "alerts[0].labels.alertname");
        let e = one(json!({"alertname": "A", "namespace": "p"})).unwrap_err();
        assert_eq!(e.field, "alerts[0].labels");
        let e = one(json!({"alertname": "A", "pod": "x"})).unwrap_err();
        assert_eq!(e.field, "alerts[0].labels.namespace");
    }

    #[test]
    fn a_webhook_must_be_v4_with_alerts() {
        let e =
            parse_alertmanager(json!({"version": "3", "alerts": [{}]}), Utc::now()).unwrap_err();
        assert_eq!(e.field, "version");
        let e = parse_alertmanager(webhook(json!([])), Utc::now()).unwrap_err();
        assert_eq!(e.field, "alerts");
        assert!(parse_alertmanager(json!([1, 2]), Utc::now()).is_err());
    }

    fn labels(v: Value) -> BTreeMap<String, String> {
        serde_json::from_value(v).unwrap()
    }

    /// kube-prometheus's KubeDeploymentReplicasMismatch as kube-prometheus-stack
    /// delivers it: the scrape's identity and the exporter's own Pod included.
    fn deployment_mismatch() -> BTreeMap<String, String> {
        labels(
            json!({"alertname": "KubeDeploymentReplicasMismatch", "container": "kube-state-metrics",
            "deployment": "checkout", "endpoint": "http", "instance": "10.244.1.7:8080",
            "job": "kube-state-metrics", "namespace": "shop",
            "pod": "kube-prometheus-stack-kube-state-metrics-6d8b4c9f5-lq2mz",
            "prometheus": "monitoring/kube-prometheus-stack-prometheus",
            "service": "kube-prometheus-stack-kube-state-metrics", "severity": "warning"}),
        )
    }

    #[test]
    fn the_default_table_follows_kube_state_metrics_and_node_exporter_labels() {
        let c = SignalsConfig::default();
        let target = |v: Value| target_of(&labels(v), &c).unwrap();
        assert_eq!(
            target_of(&deployment_mismatch(), &c).unwrap(),
            ResourceRef::new(Some("shop"), "Deployment", "checkout")
        );
        // KubeJobFailed: `job` is the scrape's, `job_name` the Job.
        assert_eq!(
            target(
                json!({"alertname": "KubeJobFailed", "condition": "true", "job": "kube-state-metrics",
                "job_name": "nightly-report-28860480", "namespace": "batch",
                "instance": "10.244.1.7:8080", "service": "kube-state-metrics"})
            ),
            ResourceRef::new(Some("batch"), "Job", "nightly-report-28860480")
        );
        // KubePodCrashLooping.
        assert_eq!(
            target(
                json!({"alertname": "KubePodCrashLooping", "container": "checkout",
                "job": "kube-state-metrics", "namespace": "shop", "pod": "checkout-7d9f8b6c4-x2x4q",
                "reason": "CrashLoopBackOff", "service": "kube-state-metrics"})
            ),
            ResourceRef::new(Some("shop"), "Pod", "checkout-7d9f8b6c4-x2x4q")
        );
        // NodeFilesystemSpaceFillingUp from kube-prometheus (instance relabelled to the node).
        assert_eq!(
            target(
                json!({"alertname": "NodeFilesystemSpaceFillingUp", "container": "kube-rbac-proxy",
                "device": "/dev/nvme0n1p1", "endpoint": "https", "fstype": "ext4",
                "instance": "worker-3", "job": "node-exporter", "mountpoint": "/",
                "namespace": "monitoring", "pod": "node-exporter-8xk2p", "service": "node-exporter"})
            ),
            ResourceRef::new(None, "Node", "worker-3")
        );
        // KubeNodeNotReady names the node in `node`; elsewhere `instance` is no node.
        assert_eq!(
            target(
                json!({"alertname": "KubeNodeNotReady", "condition": "Ready", "status": "true",
                "job": "kube-state-metrics", "instance": "10.244.1.7:8080", "node": "worker-2"})
            ),
            ResourceRef::new(None, "Node", "worker-2")
        );
        // node-exporter without kube-prometheus's relabelling: an address, no node.
        let e = target_of(
            &labels(json!({"alertname": "NodeFilesystemSpaceFillingUp", "job": "node-exporter",
                "instance": "10.0.3.7:9100", "pod": "node-exporter-8xk2p", "namespace": "monitoring"})),
            &c,
        )
        .unwrap_err();
        assert_eq!(e.field, "labels.instance");
        assert!(e.message.contains("10.0.3.7:9100"), "{}", e.message);
        // Only scrape identity: no target.
        let e = target_of(
            &labels(
                json!({"alertname": "TargetDown", "job": "kube-state-metrics",
                "instance": "10.244.1.7:8080", "service": "kube-state-metrics",
                "endpoint": "http", "container": "kube-state-metrics", "namespace": "monitoring",
                "prometheus": "monitoring/k8s", "prometheus_replica": "prometheus-k8s-0",
                "exported_job": "x"}),
            ),
            &c,
        )
        .unwrap_err();
        assert_eq!(e.field, "labels");
        assert!(e.message.contains("job_name"), "{}", e.message);
    }

    #[test]
    // figment's Jail API fixes the closure's error type.
    #[allow(clippy::result_large_err)]
    fn a_table_from_the_configuration_replaces_the_default() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "g.yaml",
                "signals:\n  cluster_label: k8s_cluster\n  namespace_labels: [namespace]\n  target_labels:\n    - {label: app_kubernetes_io_name, kind: Deployment}\n    - {label: instance, kind: Node, cluster_scoped: true, jobs: [node]}\n",
            )?;
            let c = crate::config::Config::load(Some(std::path::Path::new("g.yaml")))
                .unwrap()
                .signals;
            assert_eq!(c.cluster_label, "k8s_cluster");
            let relabelled = labels(json!({"alertname": "HighErrorRate", "job": "checkout",
                "namespace": "shop", "app_kubernetes_io_name": "checkout", "pod": "checkout-1"}));
            assert_eq!(
                target_of(&relabelled, &c).unwrap(),
                ResourceRef::new(Some("shop"), "Deployment", "checkout")
            );
            let node =
                labels(json!({"alertname": "NodeDown", "job": "node", "instance": "worker-9"}));
            assert_eq!(
                target_of(&node, &c).unwrap(),
                ResourceRef::new(None, "Node", "worker-9")
            );
            // The replaced table no longer knows `deployment`.
            assert!(target_of(&deployment_mismatch(), &c).is_err());
            Ok(())
        });
    }

    #[test]
    fn resolved_alerts_parse_even_without_a_target_and_common_labels_merge() {
        let body = json!({"commonLabels": {"namespace": "shop", "severity": "info"},
        "alerts": [
            {"status": "resolved", "labels": {"alertname": "Watchdog"}},
            {"status": "resolved", "labels": {"alertname": "A", "pod": "p-0"}},
            {"status": "resolved", "labels": {"alertname": "B", "replicas": 3}},
            {"status": "firing", "labels": {"alertname": "A", "pod": "p-0", "severity": "critical"},
             "annotations": null}
        ]});
        let all = parse_webhook(body, Utc::now(), &SignalsConfig::default()).unwrap();
        assert!(matches!(all[0], Ok(Alert::ResolvedWithoutTarget(_))));
        let Ok(Alert::Resolved(s)) = &all[1] else {
            panic!("{:?}", all[1])
        };
        assert_eq!(s.target, ResourceRef::new(Some("shop"), "Pod", "p-0"));
        assert_eq!(s.severity, "info");
        assert!(matches!(all[2], Ok(Alert::ResolvedWithoutTarget(_))));
        let Ok(Alert::Firing(s)) = &all[3] else {
            panic!("{:?}", all[3])
        };
        assert_eq!(s.severity, "critical");
    }

    #[test]
    fn an_event_is_dated_by_its_newest_observation() {
        let mut v = event("Warning");
        assert_eq!(
            event_last_observed(&v),
            None,
            "firstTimestamp alone says nothing of now"
        );
        v["lastTimestamp"] = json!("2026-11-28T05:01:00Z");
        v["eventTime"] = json!("2026-11-28T05:00:30.123456Z");
        v["series"] = json!({"count": 4, "lastObservedTime": "2026-11-28T05:09:00.000001Z"});
        assert_eq!(
            event_last_observed(&v).unwrap().to_rfc3339(),
            "2026-11-28T05:09:00.000001+00:00"
        );
    }

    fn event(kind_type: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "api-0.17a", "namespace": "payments"},
            "type": kind_type, "reason": "BackOff", "message": "Back-off restarting failed container",
            "involvedObject": {"kind": "Pod", "name": "api-0", "namespace": "payments"},
            "firstTimestamp": "2026-11-28T05:00:00Z", "count": 3,
            "source": {"component": "kubelet"}
        })
    }

    #[test]
    fn a_warning_event_becomes_a_signal() {
        let s = parse_kubernetes_event(event("Warning"), Utc::now()).unwrap();
        assert_eq!(s.name, "BackOff");
        assert_eq!(s.severity, "warning");
        assert_eq!(s.target, ResourceRef::new(Some("payments"), "Pod", "api-0"));
        assert_eq!(s.labels["source_component"], "kubelet");
        assert_eq!(
            s.annotations["message"],
            "Back-off restarting failed container"
        );
    }

    #[test]
    fn a_normal_event_is_refused() {
        let e = parse_kubernetes_event(event("Normal"), Utc::now()).unwrap_err();
        assert_eq!(e.field, "type");
    }

    #[test]
    fn an_event_needs_its_involved_object_kind_and_name() {
        let mut v = event("Warning");
        v["involvedObject"].as_object_mut().unwrap().remove("kind");
        let e = parse_kubernetes_event(v, Utc::now()).unwrap_err();
        assert_eq!(e.field, "involvedObject.kind");
        let mut v = event("Warning");
        v.as_object_mut().unwrap().remove("involvedObject");
        assert_eq!(
            parse_kubernetes_event(v, Utc::now()).unwrap_err().field,
            "involvedObject"
        );
    }
}
