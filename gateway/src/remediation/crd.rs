//! The `RemediationRequest` custom resource (`kubernaut.ai/v1alpha1`), defined
//! as a Rust type. `gateway crdgen` prints its YAML, which is committed under
//! `deploy/crds/`; a test fails when that file is stale.

use std::collections::BTreeMap;

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label carrying the first 63 characters of the fingerprint (label values are
/// limited to 63), for listing candidates; the full value is in the spec.
pub const FINGERPRINT_LABEL: &str = "kubernaut.ai/signal-fingerprint";

/// Label carrying the request's generation among its fingerprint's requests
/// (1, 2, …): the next request of a fingerprint is named after generation
/// max + 1, so racing replicas collide on the name.
pub const GENERATION_LABEL: &str = "kubernaut.ai/signal-generation";

/// Annotation naming the replica and signal that created the request, so a
/// create retried after a lost answer recognises its own object.
pub const CREATED_BY_ANNOTATION: &str = "kubernaut.ai/created-by";

/// Most signal tokens kept in `status.deduplication.recentSignals`.
pub const RECENT_SIGNALS: usize = 8;

/// Phases after which a request no longer absorbs duplicates.
pub const TERMINAL_PHASES: &[&str] = &["Completed", "Failed", "TimedOut", "Skipped", "Cancelled"];

/// Path of the generated CRD YAML, relative to the workspace root.
pub const CRD_PATH: &str = "deploy/crds/remediationrequest.yaml";

/// What the Gateway asks the platform to remediate.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubernaut.ai",
    version = "v1alpha1",
    kind = "RemediationRequest",
    plural = "remediationrequests",
    shortname = "rr",
    namespaced,
    status = "RemediationRequestStatus",
    printcolumn = r#"{"name":"Signal","type":"string","jsonPath":".spec.signalName"}"#,
    printcolumn = r#"{"name":"Severity","type":"string","jsonPath":".spec.severity"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.overallPhase"}"#,
    printcolumn = r#"{"name":"Occurrences","type":"integer","jsonPath":".status.deduplication.occurrenceCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RemediationRequestSpec {
    /// Hex SHA-256 of `[cluster:]namespace:Kind:name` of the target.
    pub signal_fingerprint: String,
    /// Alert name or event reason.
    pub signal_name: String,
    /// Severity (`unknown` when the signal carried none).
    pub severity: String,
    /// `prometheus` or `kubernetes-event`.
    pub signal_source: String,
    /// The resource to remediate (the top owning workload when resolvable).
    pub target_resource: TargetResource,
    /// The signal's labels.
    #[serde(default)]
    pub signal_labels: BTreeMap<String, String>,
    /// The signal's annotations.
    #[serde(default)]
    pub signal_annotations: BTreeMap<String, String>,
    /// When the condition started (RFC 3339), when the source said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_time: Option<String>,
    /// When the Gateway received the signal (RFC 3339).
    pub received_time: String,
    /// The source's JSON for this signal, verbatim.
    pub original_payload: String,
}

/// A Kubernetes object reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetResource {
    /// Kind (`Deployment`, `Node`, …).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace; absent for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Observed state; the Gateway owns `deduplication`, the remediation
/// controllers own `overallPhase` and every other field. The schema types
/// the core and preserves unknown fields, so the API server keeps what other
/// controllers write (the Gateway's merge patches never touch them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct RemediationRequestStatus {
    /// Lifecycle phase (`Pending`, `Processing`, `Completed`, `Failed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall_phase: Option<String>,
    /// Duplicate signals absorbed by this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication: Option<DeduplicationStatus>,
}

/// Duplicate signals absorbed by a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeduplicationStatus {
    /// When the first signal arrived (RFC 3339).
    pub first_seen_at: String,
    /// When the latest signal arrived (RFC 3339).
    pub last_seen_at: String,
    /// Signals absorbed, the first included.
    pub occurrence_count: i64,
    /// Tokens of the latest signals counted (at most 8, `RECENT_SIGNALS`;
    /// newest last): a count whose answer was lost (a timeout) is recognised
    /// here on retry instead of being counted twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_signals: Vec<String>,
}

impl RemediationRequest {
    /// Whether this request still absorbs duplicates.
    pub fn is_active(&self) -> bool {
        let phase = self
            .status
            .as_ref()
            .and_then(|s| s.overall_phase.as_deref());
        !phase.is_some_and(|p| TERMINAL_PHASES.contains(&p))
    }

    /// When the first signal arrived: `status.deduplication.firstSeenAt`, or
    /// before the first duplicate (no status yet) the spec's receipt time.
    pub fn first_seen_at(&self) -> String {
        self.status
            .as_ref()
            .and_then(|s| s.deduplication.as_ref())
            .map(|d| d.first_seen_at.clone())
            .unwrap_or_else(|| self.spec.received_time.clone())
    }

    /// Occurrences counted so far: 1 until the first duplicate writes
    /// `status.deduplication` (a request is created without a status).
    pub fn occurrence_count(&self) -> u64 {
        self.status
            .as_ref()
            .and_then(|s| s.deduplication.as_ref())
            .map(|d| d.occurrence_count.max(1) as u64)
            .unwrap_or(1)
    }

    /// Tokens of the latest signals counted on it, oldest first.
    pub fn recent_signals(&self) -> Vec<String> {
        self.status
            .as_ref()
            .and_then(|s| s.deduplication.as_ref())
            .map(|d| d.recent_signals.clone())
            .unwrap_or_default()
    }
}

/// The CRD as YAML, exactly as `gateway crdgen` prints it.
pub fn crd_yaml() -> String {
    let body = serde_yaml::to_string(&RemediationRequest::crd())
        .expect("a CustomResourceDefinition serialises to YAML");
    format!(
        "# Generated by `gateway crdgen` from gateway/src/remediation/crd.rs; do not edit.\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crd_names_group_version_short_name_and_status_subresource() {
        let crd = RemediationRequest::crd();
        assert_eq!(crd.spec.group, "kubernaut.ai");
        assert_eq!(crd.spec.names.kind, "RemediationRequest");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["rr".to_owned()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some());
    }

    #[test]
    fn the_status_schema_keeps_other_controllers_fields() {
        let crd = RemediationRequest::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let status = &schema["openAPIV3Schema"]["properties"]["status"];
        assert_eq!(
            status["x-kubernetes-preserve-unknown-fields"], true,
            "{status}"
        );
        assert!(status["properties"]["deduplication"].is_object());
    }

    #[test]
    fn terminal_phases_end_activity() {
        let mut rr = RemediationRequest::new(
            "rr-x",
            RemediationRequestSpec {
                signal_fingerprint: "f".into(),
                signal_name: "A".into(),
                severity: "unknown".into(),
                signal_source: "prometheus".into(),
                target_resource: TargetResource {
                    kind: "Pod".into(),
                    name: "p".into(),
                    namespace: None,
                },
                signal_labels: BTreeMap::new(),
                signal_annotations: BTreeMap::new(),
                firing_time: None,
                received_time: "2026-11-28T05:00:00Z".into(),
                original_payload: "{}".into(),
            },
        );
        assert!(rr.is_active());
        rr.status = Some(RemediationRequestStatus {
            overall_phase: Some("Processing".into()),
            deduplication: None,
        });
        assert!(rr.is_active());
        rr.status.as_mut().unwrap().overall_phase = Some("Completed".into());
        assert!(!rr.is_active());
    }
}
