//! The gRPC contract (`proto/audit.proto`) and its mapping to the JSON model.
//!
//! The server turns every protobuf event into the same JSON value the REST API
//! receives, so both transports share one validation and one hash.

use serde_json::{Map, Value};

use crate::event::AuditEvent;
use crate::problem::Problem;

/// Generated messages, client and server of `audit.v1`.
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("audit.v1");
}

impl From<&AuditEvent> for v1::AuditEvent {
    fn from(e: &AuditEvent) -> Self {
        Self {
            version: e.version.clone(),
            event_id: e.event_id.map(|id| id.to_string()),
            event_type: e.event_type.clone(),
            event_timestamp: crate::timestamp::format(&e.event_timestamp),
            event_category: e.event_category.clone(),
            event_action: e.event_action.clone(),
            event_outcome: e.event_outcome.as_str().to_owned(),
            actor_type: e.actor_type.clone(),
            actor_id: e.actor_id.clone(),
            actor_ip: e.actor_ip.clone(),
            resource_type: e.resource_type.clone(),
            resource_id: e.resource_id.clone(),
            correlation_id: e.correlation_id.clone(),
            parent_event_id: e.parent_event_id.map(|id| id.to_string()),
            namespace: e.namespace.clone(),
            cluster_id: e.cluster_id.clone(),
            severity: e.severity.clone(),
            duration_ms: e.duration_ms,
            error_code: e.error_code.clone(),
            error_message: e.error_message.clone(),
            retention_days: Some(e.retention_days),
            is_sensitive: Some(e.is_sensitive),
            event_data_json: serde_json::to_string(&e.event_data).unwrap_or_else(|_| "{}".into()),
        }
    }
}

/// The JSON value the REST API would have received for this event. Empty
/// required strings become absent fields, so validation reports them as missing.
pub fn to_json(e: v1::AuditEvent) -> Value {
    let mut m = Map::new();
    let mut text = |key: &str, v: String| {
        if !v.is_empty() {
            m.insert(key.to_owned(), Value::String(v));
        }
    };
    text("version", e.version);
    text("event_type", e.event_type);
    text("event_timestamp", e.event_timestamp);
    text("event_category", e.event_category);
    text("event_action", e.event_action);
    text("event_outcome", e.event_outcome);
    text("actor_type", e.actor_type);
    text("actor_id", e.actor_id);
    text("resource_type", e.resource_type);
    text("resource_id", e.resource_id);
    text("correlation_id", e.correlation_id);
    let optional = [
        ("event_id", e.event_id),
        ("actor_ip", e.actor_ip),
        ("parent_event_id", e.parent_event_id),
        ("namespace", e.namespace),
        ("cluster_id", e.cluster_id),
        ("severity", e.severity),
        ("error_code", e.error_code),
        ("error_message", e.error_message),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            m.insert(key.to_owned(), Value::String(v));
        }
    }
    if let Some(v) = e.duration_ms {
        m.insert("duration_ms".into(), v.into());
    }
    if let Some(v) = e.retention_days {
        m.insert("retention_days".into(), v.into());
    }
    if let Some(v) = e.is_sensitive {
        m.insert("is_sensitive".into(), v.into());
    }
    if !e.event_data_json.is_empty() {
        let data =
            serde_json::from_str(&e.event_data_json).unwrap_or(Value::String(e.event_data_json));
        m.insert("event_data".into(), data);
    }
    Value::Object(m)
}

/// Packs a problem document into a gRPC status (JSON in the details), so gRPC
/// clients get the same field-level errors as REST clients.
pub fn status_from_problem(code: tonic::Code, problem: &Problem) -> tonic::Status {
    let details = serde_json::to_vec(problem).unwrap_or_default();
    let message = problem
        .detail
        .clone()
        .unwrap_or_else(|| problem.title.clone());
    tonic::Status::with_details(code, message, details.into())
}

/// The problem document inside a status built by [`status_from_problem`].
pub fn problem_from_status(status: &tonic::Status) -> Option<Problem> {
    serde_json::from_slice(status.details()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_the_protobuf_round_trip() {
        let event = AuditEvent::builder("gateway.crd.created", "rr-1")
            .category("gateway")
            .action("created")
            .actor("service", "gateway")
            .resource("RemediationRequest", "rr-1")
            .namespace("ns")
            .duration_ms(5)
            .data("nested", serde_json::json!({"a": [1, 2.5]}))
            .build();
        let json = to_json(v1::AuditEvent::from(&event));
        let back = AuditEvent::from_json(json, chrono::Utc::now()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn empty_required_strings_are_reported_missing() {
        let json = to_json(v1::AuditEvent::default());
        let err = AuditEvent::from_json(json, chrono::Utc::now()).unwrap_err();
        assert!(err
            .0
            .iter()
            .any(|e| e.field == "event_type" && e.message == "is required"));
    }
}
