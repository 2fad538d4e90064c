//! `GET /api/v1/openapi.json`, generated from the handler annotations and the
//! `audit-sdk` wire types, so the document cannot drift from the code.

use axum::Json;
use utoipa::OpenApi;

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "DataStorage audit API",
        description = "Central audit event store: idempotent ingest, query, per-correlation hash chains."
    ),
    paths(
        super::ingest::post_batch,
        super::ingest::post_event,
        super::query::list_events,
        super::query::get_event,
        super::verify::verify_chain,
        super::legal_hold::place,
        super::legal_hold::release,
        super::legal_hold::list,
        super::legal_hold::history,
    ),
    components(schemas(
        audit_sdk::AuditEvent,
        audit_sdk::StoredEvent,
        audit_sdk::EventOutcome,
        audit_sdk::Problem,
        audit_sdk::FieldError,
        audit_sdk::api::BatchResponse,
        audit_sdk::api::EventPage,
        audit_sdk::api::Pagination,
        audit_sdk::api::VerifyChainRequest,
        audit_sdk::api::VerifyChainResponse,
        audit_sdk::api::TamperedEvent,
        audit_sdk::api::LegalHoldRequest,
        audit_sdk::api::LegalHoldReleaseRequest,
        audit_sdk::api::LegalHold,
        audit_sdk::api::LegalHoldReleased,
        audit_sdk::api::LegalHoldList,
        audit_sdk::api::LegalHoldActionKind,
        audit_sdk::api::LegalHoldAction,
        audit_sdk::api::LegalHoldHistory,
    ))
)]
pub struct ApiDoc;

/// Serves the generated document.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
