//! One [`Signal`] type for every source, parsed from the sources' own formats.
//!
//! Parsing is where an input is accepted or refused: a `Signal` always has a
//! name, a severity and a target, so nothing downstream re-checks them.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

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

/// Labels naming the target, most specific workload first: an alert carrying
/// both `deployment` and `pod` is about the Deployment, so every Pod of it
/// deduplicates together.
const TARGET_LABELS: &[(&str, &str, bool)] = &[
    // (label, Kind, namespaced)
    ("deployment", "Deployment", true),
    ("statefulset", "StatefulSet", true),
    ("daemonset", "DaemonSet", true),
    ("cronjob", "CronJob", true),
    ("job", "Job", true),
    ("replicaset", "ReplicaSet", true),
    ("pod", "Pod", true),
    ("service", "Service", true),
    ("persistentvolumeclaim", "PersistentVolumeClaim", true),
    ("node", "Node", false),
];

/// Severity used when a signal carries none.
pub const UNKNOWN_SEVERITY: &str = "unknown";

/// The AlertManager webhook envelope; alerts stay raw so each is parsed (and
/// refused) on its own.
#[derive(Debug, Deserialize)]
struct Webhook {
    version: Option<String>,
    alerts: Option<Vec<Value>>,
}

/// One alert of a webhook.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: Option<DateTime<Utc>>,
}

/// Splits an AlertManager v4 webhook into its alerts, each parsed on its own.
///
/// The outer error refuses the whole body (not a v4 webhook, no alerts); an
/// inner error refuses one alert while its neighbours go ahead.
pub fn parse_alertmanager(
    body: Value,
    received_time: DateTime<Utc>,
) -> Result<Vec<Result<Signal, InvalidSignal>>, InvalidSignal> {
    let webhook: Webhook = serde_json::from_value(body)
        .map_err(|e| InvalidSignal::new("", format!("not an AlertManager webhook: {e}")))?;
    match webhook.version.as_deref() {
        Some("4") => {}
        Some(v) => {
            return Err(InvalidSignal::new(
                "version",
                format!("must be \"4\" (AlertManager webhook v4), got {v:?}"),
            ))
        }
        None => return Err(InvalidSignal::new("version", "is required (\"4\")")),
    }
    let alerts = webhook
        .alerts
        .filter(|a| !a.is_empty())
        .ok_or_else(|| InvalidSignal::new("alerts", "must hold at least one alert"))?;
    Ok(alerts
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            parse_alert(raw, received_time).map_err(|e| e.within(&format!("alerts[{i}]")))
        })
        .collect())
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

fn parse_alert(raw: Value, received_time: DateTime<Utc>) -> Result<Signal, InvalidSignal> {
    let alert: Alert = serde_json::from_value(raw.clone())
        .map_err(|e| InvalidSignal::new("", format!("not an AlertManager alert: {e}")))?;
    if alert.status.as_deref() == Some("resolved") {
        return Err(InvalidSignal::new(
            "status",
            "a resolved alert does not start a remediation",
        ));
    }
    let name = non_empty(alert.labels.get("alertname"))
        .ok_or_else(|| InvalidSignal::new("labels.alertname", "is required"))?;
    let namespace = non_empty(alert.labels.get("exported_namespace"))
        .or_else(|| non_empty(alert.labels.get("namespace")));
    let target = TARGET_LABELS
        .iter()
        .find_map(|(label, kind, namespaced)| {
            non_empty(alert.labels.get(*label)).map(|n| (kind, *namespaced, n))
        })
        .ok_or_else(|| {
            let labels: Vec<&str> = TARGET_LABELS.iter().map(|(l, _, _)| *l).collect();
            InvalidSignal::new(
                "labels",
                format!(
                    "names no target resource: expected one of {}",
                    labels.join(", ")
                ),
            )
        })?;
    let (kind, namespaced, resource_name) = target;
    let namespace = if namespaced {
        Some(namespace.ok_or_else(|| {
            InvalidSignal::new(
                "labels.namespace",
                format!("is required for a {kind} target (or exported_namespace)"),
            )
        })?)
    } else {
        None
    };
    Ok(Signal {
        severity: non_empty(alert.labels.get("severity"))
            .unwrap_or(UNKNOWN_SEVERITY)
            .to_owned(),
        name: name.to_owned(),
        source: SignalSource::Prometheus,
        target: ResourceRef::new(namespace, *kind, resource_name),
        firing_time: alert.starts_at,
        received_time,
        labels: alert.labels.clone(),
        annotations: alert.annotations,
        payload: raw,
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
