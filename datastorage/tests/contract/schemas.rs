//! JSON Schemas of the answers the reference platform's DataStorage client
//! declares (its `api/openapi/data-storage-v1.yaml`), written here from the facts
//! of that document: which status each operation declares, which fields are
//! required, their types, formats and enums, and how `event_data` is chosen by
//! its `event_type` discriminator.
//!
//! A generated client (the reference uses ogen) decodes strictly: an undeclared
//! status is an error, a missing required field is an error, an enum value it
//! does not know is an error, and an `event_data` whose `event_type` is not in
//! the discriminator mapping (or that lacks a payload's required fields) cannot
//! be decoded. Fields it does not know are skipped, so our extra fields stay.
//!
//! Only the payload families the suite's fixtures send are modelled; an event
//! of another family fails the discriminator check, as it would fail a decoder
//! that lacks its mapping.

use serde_json::{json, Value};

/// `RFC7807Problem`: every error answer.
pub fn problem() -> Value {
    json!({
        "type": "object",
        "required": ["type", "title", "status"],
        "properties": {
            "type": { "type": "string", "pattern": "^https://kubernaut\\.ai/problems/.+" },
            "title": { "type": "string" },
            "status": { "type": "integer" },
            "detail": { "type": "string" },
            "instance": { "type": "string" }
        }
    })
}

/// `AuditEventResponse`: 201 of `createAuditEvent`.
pub fn audit_event_response() -> Value {
    json!({
        "type": "object",
        "required": ["event_id", "event_timestamp", "message"],
        "properties": {
            "event_id": { "type": "string", "format": "uuid" },
            "event_timestamp": { "type": "string", "format": "date-time" },
            "message": { "type": "string" }
        }
    })
}

/// `BatchAuditEventResponse`: 201 of `createAuditEventsBatch`.
pub fn batch_audit_event_response() -> Value {
    json!({
        "type": "object",
        "properties": {
            "event_ids": { "type": "array", "items": { "type": "string", "format": "uuid" } },
            "message": { "type": "string" }
        }
    })
}

/// The `event_category` values the reference declares.
const CATEGORIES: &[&str] = &[
    "gateway",
    "notification",
    "analysis",
    "aiagent",
    "signalprocessing",
    "workflow",
    "workflowexecution",
    "orchestration",
    "approval",
    "effectiveness",
    "actiontype",
    "apifrontend",
];

const GATEWAY_TYPES: &[&str] = &[
    "gateway.signal.received",
    "gateway.signal.deduplicated",
    "gateway.crd.created",
    "gateway.crd.failed",
];

const ORCHESTRATOR_TYPES: &[&str] = &[
    "orchestrator.lifecycle.started",
    "orchestrator.lifecycle.created",
    "orchestrator.lifecycle.completed",
    "orchestrator.lifecycle.failed",
    "orchestrator.lifecycle.transitioned",
    "orchestrator.approval.requested",
    "orchestrator.approval.approved",
    "orchestrator.approval.rejected",
];

const SIGNAL_PROCESSING_TYPES: &[&str] = &[
    "signalprocessing.signal.processed",
    "signalprocessing.phase.transition",
    "signalprocessing.classification.decision",
    "signalprocessing.business.classified",
    "signalprocessing.enrichment.completed",
    "signalprocessing.error.occurred",
];

fn gateway_payload() -> Value {
    json!({
        "type": "object",
        "required": ["signal_type", "signal_name", "namespace", "fingerprint", "event_type"],
        "properties": {
            "event_type": { "enum": GATEWAY_TYPES },
            "signal_type": { "enum": ["alert"] },
            "signal_name": { "type": "string" },
            "namespace": { "type": "string" },
            "fingerprint": { "type": "string" },
            "severity": { "type": "string" },
            "resource_kind": { "type": "string" },
            "resource_name": { "type": "string" },
            "remediation_request": { "type": "string" },
            "deduplication_status": { "enum": ["new", "duplicate"] },
            "occurrence_count": { "type": "integer" },
            "original_payload": { "type": "object" },
            "signal_labels": { "type": "object", "additionalProperties": { "type": "string" } },
            "signal_annotations": { "type": "object", "additionalProperties": { "type": "string" } },
            "error_details": {
                "type": "object",
                "required": ["message", "code", "component", "retry_possible"]
            }
        }
    })
}

fn orchestrator_payload() -> Value {
    json!({
        "type": "object",
        "required": ["rr_name", "namespace", "event_type"],
        "properties": {
            "event_type": { "enum": ORCHESTRATOR_TYPES },
            "rr_name": { "type": "string" },
            "namespace": { "type": "string" },
            "outcome": { "enum": ["Success", "Failed", "Pending"] },
            "duration_ms": { "type": "integer" },
            "from_phase": { "type": "string" },
            "to_phase": { "type": "string" }
        }
    })
}

fn signal_processing_payload() -> Value {
    json!({
        "type": "object",
        "required": ["phase", "signal", "event_type"],
        "properties": {
            "event_type": { "enum": SIGNAL_PROCESSING_TYPES },
            "phase": { "enum": ["Pending", "Enriching", "Classifying", "Categorizing", "Completed", "Failed"] },
            "signal": { "type": "string" },
            "severity": { "enum": ["critical", "high", "medium", "low", "unknown"] },
            "environment": { "enum": ["production", "staging", "development"] },
            "priority": { "enum": ["P0", "P1", "P2", "P3", "P4"] }
        }
    })
}

/// `event_data`: a sum type on `event_data.event_type` (the discriminator), each
/// mapped value decoding as its family's payload.
fn event_data() -> Value {
    let family = |types: &[&str], payload: Value| {
        json!({
            "if": { "properties": { "event_type": { "enum": types } } },
            "then": payload
        })
    };
    let known: Vec<&str> = [GATEWAY_TYPES, ORCHESTRATOR_TYPES, SIGNAL_PROCESSING_TYPES].concat();
    json!({
        "type": "object",
        "required": ["event_type"],
        "properties": { "event_type": { "enum": known } },
        "allOf": [
            family(GATEWAY_TYPES, gateway_payload()),
            family(ORCHESTRATOR_TYPES, orchestrator_payload()),
            family(SIGNAL_PROCESSING_TYPES, signal_processing_payload()),
        ]
    })
}

/// `AuditEvent` (`AuditEventRequest` plus `event_id` and `event_date`): one
/// element of a query answer.
pub fn audit_event() -> Value {
    let nullable = |t: &str| json!({ "type": [t, "null"] });
    json!({
        "type": "object",
        "required": [
            "version", "event_type", "event_timestamp", "event_category",
            "event_action", "event_outcome", "correlation_id", "event_data"
        ],
        "properties": {
            "version": { "type": "string", "minLength": 1, "maxLength": 20 },
            "event_type": { "type": "string", "minLength": 1, "maxLength": 100 },
            "event_timestamp": { "type": "string", "format": "date-time" },
            "event_category": { "enum": CATEGORIES },
            "event_action": { "type": "string", "minLength": 1, "maxLength": 50 },
            "event_outcome": { "enum": ["success", "failure", "pending"] },
            "actor_type": { "type": "string" },
            "actor_id": { "type": "string" },
            "resource_type": { "type": "string" },
            "resource_id": { "type": "string" },
            "correlation_id": { "type": "string", "minLength": 1, "maxLength": 255 },
            "parent_event_id": { "anyOf": [{ "type": "string", "format": "uuid" }, { "type": "null" }] },
            "namespace": nullable("string"),
            "cluster_name": nullable("string"),
            "severity": nullable("string"),
            "duration_ms": nullable("integer"),
            "event_data": event_data(),
            "event_id": { "type": "string", "format": "uuid" },
            "event_date": { "anyOf": [{ "type": "string", "format": "date" }, { "type": "null" }] }
        }
    })
}

/// `AuditEventsQueryResponse`: 200 of `queryAuditEvents`.
pub fn audit_events_query_response() -> Value {
    json!({
        "type": "object",
        "properties": {
            "data": { "type": "array", "items": audit_event() },
            "pagination": {
                "type": "object",
                "properties": {
                    "limit": { "type": "integer" },
                    "offset": { "type": "integer" },
                    "total": { "type": "integer" },
                    "has_more": { "type": "boolean" }
                }
            }
        }
    })
}

fn hold() -> Value {
    json!({
        "type": "object",
        "properties": {
            "correlation_id": { "type": "string" },
            "events_affected": { "type": "integer" },
            "placed_by": { "type": "string" },
            "placed_at": { "type": "string", "format": "date-time" },
            "reason": { "type": "string" }
        }
    })
}

/// 200 of `placeLegalHold`. The reference marks no field required; the fields
/// its readers use are required here so that a renamed one cannot pass.
pub fn legal_hold_placed() -> Value {
    let mut schema = hold();
    schema["required"] = json!([
        "correlation_id",
        "events_affected",
        "placed_by",
        "placed_at",
        "reason"
    ]);
    schema
}

/// 200 of `listLegalHolds`.
pub fn legal_hold_list() -> Value {
    let mut item = hold();
    item["required"] = json!([
        "correlation_id",
        "events_affected",
        "placed_by",
        "placed_at"
    ]);
    json!({
        "type": "object",
        "required": ["holds", "total"],
        "properties": {
            "holds": { "type": "array", "items": item },
            "total": { "type": "integer" }
        }
    })
}

/// 200 of `releaseLegalHold`.
pub fn legal_hold_released() -> Value {
    json!({
        "type": "object",
        "required": ["correlation_id", "events_released", "released_by", "released_at"],
        "properties": {
            "correlation_id": { "type": "string" },
            "events_released": { "type": "integer" },
            "released_by": { "type": "string" },
            "released_at": { "type": "string", "format": "date-time" }
        }
    })
}

/// `VerifyChainResponse`: 200 of `verifyAuditChain` (also for a correlation id
/// without events).
pub fn verify_chain_response() -> Value {
    json!({
        "type": "object",
        "required": [
            "correlation_id", "is_valid", "total_events", "verified_events",
            "verification_time", "message"
        ],
        "properties": {
            "correlation_id": { "type": "string" },
            "is_valid": { "type": "boolean" },
            "total_events": { "type": "integer" },
            "verified_events": { "type": "integer" },
            "verification_time": { "type": "string", "format": "date-time" },
            "message": { "type": "string" },
            "tampered_events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "event_id": { "type": "string" },
                        "event_timestamp": { "type": "string", "format": "date-time" },
                        "expected_hash": { "type": "string" },
                        "actual_hash": { "type": "string" },
                        "previous_hash": { "type": "string" },
                        "message": { "type": "string" }
                    }
                }
            }
        }
    })
}

/// `AuditExportResponse`: 200 of `exportAuditEvents`.
pub fn audit_export_response() -> Value {
    json!({
        "type": "object",
        "required": ["export_metadata", "events", "hash_chain_verification"],
        "properties": {
            "export_metadata": {
                "type": "object",
                "required": ["export_timestamp", "export_format", "total_events", "signature"],
                "properties": {
                    "export_timestamp": { "type": "string", "format": "date-time" },
                    "export_format": { "enum": ["json"] },
                    "total_events": { "type": "integer" },
                    "signature": { "type": "string" },
                    "signature_algorithm": { "type": "string" },
                    "certificate_fingerprint": { "type": "string" },
                    "exported_by": { "type": "string" },
                    "query_filters": {
                        "type": "object",
                        "properties": {
                            "start_time": { "type": "string", "format": "date-time" },
                            "end_time": { "type": "string", "format": "date-time" },
                            "correlation_id": { "type": "string" },
                            "event_category": { "type": "string" },
                            "offset": { "type": "integer" },
                            "limit": { "type": "integer" }
                        }
                    }
                }
            },
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "event_id": { "type": "string", "format": "uuid" },
                        "version": { "type": "string" },
                        "event_type": { "type": "string" },
                        "event_timestamp": { "type": "string", "format": "date-time" },
                        "event_category": { "type": "string" },
                        "event_action": { "type": "string" },
                        "event_outcome": { "type": "string" },
                        "correlation_id": { "type": "string" },
                        "event_data": { "type": "object" },
                        "event_hash": { "type": "string" },
                        "previous_event_hash": { "type": "string" },
                        "hash_chain_valid": { "type": "boolean" },
                        "legal_hold": { "type": "boolean" }
                    }
                }
            },
            "hash_chain_verification": {
                "type": "object",
                "required": [
                    "total_events_verified", "valid_chain_events", "broken_chain_events",
                    "verification_timestamp"
                ],
                "properties": {
                    "total_events_verified": { "type": "integer" },
                    "valid_chain_events": { "type": "integer" },
                    "broken_chain_events": { "type": "integer" },
                    "chain_integrity_percentage": { "type": "number", "minimum": 0, "maximum": 100 },
                    "verification_timestamp": { "type": "string", "format": "date-time" },
                    "tampered_event_ids": { "type": "array", "items": { "type": "string" } }
                }
            },
            "detached_signature": { "type": "string" }
        }
    })
}
