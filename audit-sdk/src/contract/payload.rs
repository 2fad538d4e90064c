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
    // by reference that builds nothing (see `shape`). All fields are optional
    // and unknown ones are allowed, so the whole map passes exactly when
    // every field does.
    let whole = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(
        data.iter().map(|(k, v)| (k.as_str(), v)),
    );
    if shape::GatewayShape::deserialize(whole).is_ok() {
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

/// [`GatewayEventData`]'s shape, checked without building it: the same
/// fields with the same types and the same required-ness, but every string,
/// object and list is only looked at, never copied. Deserialising the real
/// struct cost `record()` one allocation per string field and a deep copy of
/// `original_payload` (the whole alert). The tests below hold the two
/// definitions together: every field of the real struct is known here, and
/// what one accepts the other does.
mod shape {
    use std::fmt;

    use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::Deserialize;

    use super::DeduplicationStatus;

    /// A JSON string, not kept.
    pub(super) struct Text;

    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Text;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_str<E>(self, _: &str) -> Result<Text, E> {
                    Ok(Text)
                }
            }
            d.deserialize_str(V)
        }
    }

    /// A JSON object of any values (`Map<String, Value>`), not kept.
    pub(super) struct AnyObject;

    impl<'de> Deserialize<'de> for AnyObject {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = AnyObject;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
                    while map.next_entry::<Text, IgnoredAny>()?.is_some() {}
                    Ok(AnyObject)
                }
            }
            d.deserialize_map(V)
        }
    }

    /// A JSON object of strings (`BTreeMap<String, String>`), not kept.
    pub(super) struct TextMap;

    impl<'de> Deserialize<'de> for TextMap {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = TextMap;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a map of strings")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextMap, A::Error> {
                    while map.next_entry::<Text, Text>()?.is_some() {}
                    Ok(TextMap)
                }
            }
            d.deserialize_map(V)
        }
    }

    /// A JSON array of strings (`Vec<String>`), not kept.
    pub(super) struct TextList;

    impl<'de> Deserialize<'de> for TextList {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = TextList;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a list of strings")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextList, A::Error> {
                    while seq.next_element::<Text>()?.is_some() {}
                    Ok(TextList)
                }
            }
            d.deserialize_seq(V)
        }
    }

    /// [`super::ErrorDetails`]: `message`, `code`, `component` and
    /// `retry_possible` are required there, so here too.
    #[derive(Deserialize)]
    #[allow(dead_code)] // only whether it deserialises matters
    pub(super) struct ErrorDetailsShape {
        message: Text,
        code: Text,
        component: Text,
        retry_possible: bool,
        #[serde(default)]
        stack_trace: Option<TextList>,
    }

    /// [`super::GatewayEventData`], field for field.
    #[derive(Deserialize)]
    #[allow(dead_code)] // only whether it deserialises matters
    pub(super) struct GatewayShape {
        #[serde(default)]
        event_type: Option<Text>,
        #[serde(default)]
        signal_type: Option<Text>,
        #[serde(default)]
        original_payload: Option<AnyObject>,
        #[serde(default)]
        signal_name: Option<Text>,
        #[serde(default)]
        fingerprint: Option<Text>,
        #[serde(default)]
        namespace: Option<Text>,
        #[serde(default)]
        severity: Option<Text>,
        #[serde(default)]
        resource_kind: Option<Text>,
        #[serde(default)]
        resource_name: Option<Text>,
        #[serde(default)]
        remediation_request: Option<Text>,
        #[serde(default)]
        deduplication_status: Option<DeduplicationStatus>,
        #[serde(default)]
        occurrence_count: Option<u64>,
        #[serde(default)]
        signal_labels: Option<TextMap>,
        #[serde(default)]
        signal_annotations: Option<TextMap>,
        #[serde(default)]
        signal_source: Option<Text>,
        #[serde(default)]
        error_code: Option<Text>,
        #[serde(default)]
        error_details: Option<ErrorDetailsShape>,
    }
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

    /// Every field set, written out (no `..Default::default()`): a field
    /// added to `GatewayEventData` fails to compile here until it is added,
    /// and then `the_shape_knows_every_field` fails until `shape` has it.
    fn complete() -> GatewayEventData {
        GatewayEventData {
            event_type: Some("gateway.crd.failed".into()),
            signal_type: Some(SIGNAL_TYPE_ALERT.into()),
            original_payload: Some(obj(json!({"labels": {"a": "b"}, "n": [1, {"x": null}]}))),
            signal_name: Some("HighMemory".into()),
            fingerprint: Some("ab".repeat(32)),
            namespace: Some("".into()),
            severity: Some("critical".into()),
            resource_kind: Some("Deployment".into()),
            resource_name: Some("api".into()),
            remediation_request: Some("ns/rr-1".into()),
            deduplication_status: Some(DeduplicationStatus::New),
            occurrence_count: Some(3),
            signal_labels: Some([("a".to_owned(), "b".to_owned())].into()),
            signal_annotations: Some([("c".to_owned(), "d".to_owned())].into()),
            signal_source: Some("prometheus".into()),
            error_code: Some("conflict".into()),
            error_details: Some(ErrorDetails {
                message: "m".into(),
                code: "c".into(),
                component: "gateway".into(),
                retry_possible: true,
                stack_trace: Some(vec!["frame".into()]),
            }),
        }
    }

    fn verdicts(data: &Map<String, Value>) -> (bool, bool) {
        let typed = GatewayEventData::deserialize(serde::de::value::MapDeserializer::<
            _,
            serde_json::Error,
        >::new(
            data.iter().map(|(k, v)| (k.as_str(), v))
        ))
        .is_ok();
        let shape = shape::GatewayShape::deserialize(serde::de::value::MapDeserializer::<
            _,
            serde_json::Error,
        >::new(
            data.iter().map(|(k, v)| (k.as_str(), v))
        ))
        .is_ok();
        (typed, shape)
    }

    #[test]
    fn the_shape_knows_every_field() {
        let full = complete().to_map();
        assert_eq!(full.len(), 17, "complete() sets every field");
        assert_eq!(verdicts(&full), (true, true));
        // A value no field accepts: the shape refuses it under each key of
        // the typed struct, so no field is missing from the shape.
        for key in full.keys() {
            let mut one = full.clone();
            one.insert(key.clone(), json!([[true]]));
            assert_eq!(verdicts(&one), (false, false), "field {key}");
        }
        let details = full["error_details"].as_object().unwrap();
        for key in details.keys() {
            let mut inner = details.clone();
            inner.insert(key.clone(), json!([[true]]));
            let one = obj(json!({ "error_details": inner }));
            assert_eq!(verdicts(&one), (false, false), "error_details.{key}");
        }
    }

    #[test]
    fn the_shape_accepts_exactly_what_the_typed_payload_accepts() {
        let cases = [
            json!({}),
            json!({"extra": {"deep": [1, 2, {"x": null}]}}),
            json!({"signal_name": null, "namespace": ""}),
            json!({"signal_name": 1}),
            json!({"signal_labels": {}}),
            json!({"signal_labels": {"a": null}}),
            json!({"signal_labels": {"a": 1}}),
            json!({"signal_labels": ["a"]}),
            json!({"signal_annotations": {"a": "b", "c": "d"}}),
            json!({"original_payload": {}}),
            json!({"original_payload": []}),
            json!({"original_payload": "text"}),
            json!({"occurrence_count": 0}),
            json!({"occurrence_count": -1}),
            json!({"occurrence_count": 1.5}),
            json!({"occurrence_count": "1"}),
            json!({"deduplication_status": "duplicate"}),
            json!({"deduplication_status": "Duplicate"}),
            json!({"error_details": {"message": "m", "code": "c", "component": "g", "retry_possible": false}}),
            json!({"error_details": {"message": "m", "code": "c", "component": "g"}}),
            json!({"error_details": {"message": "m", "code": "c", "component": "g", "retry_possible": false, "stack_trace": null}}),
            json!({"error_details": {"message": "m", "code": "c", "component": "g", "retry_possible": false, "stack_trace": [1]}}),
            json!({"error_details": {"message": "m", "code": "c", "component": "g", "retry_possible": false, "other": 1}}),
            json!({"error_details": ["m", "c", "g", true]}),
            json!({"error_details": null}),
            json!({"error_details": "failed"}),
        ];
        for case in cases {
            let (typed, shape) = verdicts(&obj(case.clone()));
            assert_eq!(typed, shape, "{case}");
        }
    }

    #[test]
    fn other_families_are_not_checked() {
        let data = obj(json!({"occurrence_count": "two"}));
        assert!(check("workflow.started", &data).is_empty());
    }
}
