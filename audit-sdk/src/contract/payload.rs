//! Typed `event_data` payloads of known event families.
//!
//! The design says known event types are checked against their typed payload.
//! [`GatewayEventData`] is the payload of every `gateway.*` event. Every field is
//! optional and unknown keys are allowed (so an older server accepts events of a
//! newer gateway), but a field that is present must have its documented type: a
//! consumer reading `occurrence_count` can rely on it being a number.
//!
//! Its fields are a superset of the reference platform's Gateway payload
//! (`event_type` discriminator, `signal_type`, `signal_name`, `namespace`,
//! `fingerprint`, `original_payload`, `error_details`, …), so the Gateway's
//! events are what a reference reader decodes; `signal_source` and
//! `error_code` are ours.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::problem::FieldError;

/// Prefix of the event types whose `event_data` is a [`GatewayEventData`].
pub const GATEWAY_EVENT_PREFIX: &str = "gateway.";

/// Whether a signal created a new RemediationRequest or joined an active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeduplicationStatus {
    /// No active RemediationRequest had this fingerprint.
    New,
    /// An active RemediationRequest with this fingerprint absorbed the signal.
    Duplicate,
}

/// The reference payload's only `signal_type`: every adapter's signal is an
/// alert (the adapter is `signal_source`).
pub const SIGNAL_TYPE_ALERT: &str = "alert";

/// Why an operation failed, in the reference platform's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetails {
    /// Human-readable description.
    pub message: String,
    /// Machine-readable classification.
    pub code: String,
    /// The service that failed (`gateway`).
    pub component: String,
    /// Whether a retry can succeed (transient) or not (permanent).
    pub retry_possible: bool,
    /// Top stack frames, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<Vec<String>>,
}

/// `event_data` of the Gateway's events (`gateway.signal.received`,
/// `gateway.signal.deduplicated`, `gateway.crd.created`, `gateway.crd.failed`,
/// `gateway.signal.resolved`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEventData {
    /// The event's own type: the discriminator readers decode the payload by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Kind of signal; always [`SIGNAL_TYPE_ALERT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_type: Option<String>,
    /// The source's own JSON for the signal (one alert, or the event), from
    /// which a RemediationRequest can be rebuilt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_payload: Option<Map<String, Value>>,
    /// The signal's name (AlertManager `alertname`, Kubernetes event `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_name: Option<String>,
    /// Hex SHA-256 fingerprint of the signal's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Namespace of the target resource (`""` for cluster-scoped kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Severity of the signal (`unknown` when it carried none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Kind of the target resource (`Deployment`, `Node`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_kind: Option<String>,
    /// Name of the target resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// The RemediationRequest the signal created or joined, as
    /// `namespace/name` (its name alone is the event's `correlation_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_request: Option<String>,
    /// New or duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_status: Option<DeduplicationStatus>,
    /// How many signals the RemediationRequest has absorbed, this one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence_count: Option<u64>,
    /// The signal's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_labels: Option<BTreeMap<String, String>>,
    /// The signal's annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_annotations: Option<BTreeMap<String, String>>,
    /// Where the signal came from (`prometheus`, `kubernetes-event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_source: Option<String>,
    /// Why a RemediationRequest could not be created (`gateway.crd.failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The same failure in the reference's shape (`gateway.crd.failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<ErrorDetails>,
}

impl GatewayEventData {
    /// The payload as an `event_data` object.
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            // A struct of strings, numbers and string maps always serialises to an object.
            _ => Map::new(),
        }
    }
}

/// Checks `data` against the typed payload of `event_type`, when there is one.
pub(crate) fn check(event_type: &str, data: &Map<String, Value>) -> Vec<FieldError> {
    if !event_type.starts_with(GATEWAY_EVENT_PREFIX) {
        return Vec::new();
    }
    // Hot path (every `record()` of a Gateway event): one pass over the map
    // by reference, no clones. All fields are optional and unknown ones are
    // allowed, so the whole map deserialises exactly when every field does.
    let whole = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(
        data.iter().map(|(k, v)| (k.as_str(), v)),
    );
    if GatewayEventData::deserialize(whole).is_ok() {
        return Vec::new();
    }
    // Field by field, so every wrongly typed field is reported, each by name.
    let probe = |key: &str, value: &Value| -> Option<String> {
        let mut one = Map::new();
        one.insert(key.to_owned(), value.clone());
        serde_json::from_value::<GatewayEventData>(Value::Object(one))
            .err()
            .map(|e| e.to_string())
    };
    data.iter()
        .filter(|(_, v)| !v.is_null())
        .filter_map(|(k, v)| {
            probe(k, v).map(|msg| {
                FieldError::new(
                    format!("event_data.{k}"),
                    format!("does not match the {GATEWAY_EVENT_PREFIX}* payload: {msg}"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_complete_gateway_payload_passes() {
        let data = GatewayEventData {
            signal_name: Some("HighMemory".into()),
            occurrence_count: Some(2),
            deduplication_status: Some(DeduplicationStatus::Duplicate),
            signal_labels: Some([("a".to_owned(), "b".to_owned())].into()),
            ..Default::default()
        };
        assert!(check("gateway.signal.deduplicated", &data.to_map()).is_empty());
    }

    #[test]
    fn wrongly_typed_gateway_fields_are_each_reported() {
        let data = obj(json!({
            "occurrence_count": "two",
            "deduplication_status": "maybe",
            "signal_labels": {"a": 1},
            "extra": "allowed"
        }));
        let mut fields: Vec<String> = check("gateway.signal.received", &data)
            .into_iter()
            .map(|e| e.field)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "event_data.deduplication_status",
                "event_data.occurrence_count",
                "event_data.signal_labels"
            ]
        );
    }

    #[test]
    fn one_wrong_field_among_good_and_null_ones_is_still_found() {
        // The one-pass fast path must not hide what the per-field pass finds.
        let data = obj(json!({
            "signal_name": "HighMemory",
            "namespace": null,
            "signal_labels": {"team": "payments"},
            "occurrence_count": -1,
            "extra": {"any": ["thing"]}
        }));
        let fields: Vec<String> = check("gateway.signal.received", &data)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["event_data.occurrence_count"]);
        let good = obj(json!({"signal_name": "x", "namespace": null, "extra": 1}));
        assert!(check("gateway.signal.received", &good).is_empty());
    }

    #[test]
    fn reference_fields_are_typed_too() {
        let data = obj(json!({
            "event_type": "gateway.crd.failed",
            "signal_type": "alert",
            "original_payload": "not an object",
            "error_details": {"message": "m", "code": "c", "component": "gateway"}
        }));
        let mut fields: Vec<String> = check("gateway.crd.failed", &data)
            .into_iter()
            .map(|e| e.field)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            ["event_data.error_details", "event_data.original_payload"]
        );
    }

    #[test]
    fn other_families_are_not_checked() {
        let data = obj(json!({"occurrence_count": "two"}));
        assert!(check("workflow.started", &data).is_empty());
    }
}
