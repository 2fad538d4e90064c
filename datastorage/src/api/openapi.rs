//! `GET /api/v1/openapi.json`, generated from the handler annotations and the
//! `audit-sdk` wire types, so the document cannot drift from the code.
//!
//! One fragment per path group ([`IngestPaths`], [`QueryPaths`], [`VerifyPaths`],
//! [`LegalHoldPaths`]); [`document`] merges them into [`ApiDoc`] (info and shared
//! schemas) and then adds the answers every route can give. A new group is one
//! more fragment in [`document`]'s list.

use axum::Json;
use utoipa::OpenApi;

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "DataStorage audit API",
        description = "Central audit event store: idempotent ingest, query, per-correlation hash chains."
    ),
    components(schemas(
        audit_sdk::AuditEvent,
        audit_sdk::StoredEvent,
        audit_sdk::EventOutcome,
        audit_sdk::Problem,
        audit_sdk::FieldError,
        audit_sdk::api::BatchResponse,
        audit_sdk::api::BatchCreated,
        audit_sdk::api::EventCreated,
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

/// `POST /api/v1/audit/events` and `/events/batch`.
#[derive(Debug, OpenApi)]
#[openapi(paths(super::ingest::post_batch, super::ingest::post_event))]
pub struct IngestPaths;

/// `GET /api/v1/audit/events` and `/events/{event_id}`.
#[derive(Debug, OpenApi)]
#[openapi(paths(super::query::list_events, super::query::get_event))]
pub struct QueryPaths;

/// `POST /api/v1/audit/verify-chain`.
#[derive(Debug, OpenApi)]
#[openapi(paths(super::verify::verify_chain))]
pub struct VerifyPaths;

/// The legal-hold routes.
#[derive(Debug, OpenApi)]
#[openapi(paths(
    super::legal_hold::place,
    super::legal_hold::release,
    super::legal_hold::list,
    super::legal_hold::history,
))]
pub struct LegalHoldPaths;

/// The whole document: every fragment merged, then the edge answers added.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for fragment in [
        IngestPaths::openapi(),
        QueryPaths::openapi(),
        VerifyPaths::openapi(),
        LegalHoldPaths::openapi(),
        super::checkpoints::CheckpointsDoc::openapi(),
        super::export::ExportDoc::openapi(),
    ] {
        doc.merge(fragment);
    }
    utoipa::Modify::modify(&EdgeAnswers, &mut doc);
    doc
}

/// Answers every route can give whatever its handler does, added in one place:
/// the body extractor's 413/415 on routes with a body, and the load limits'
/// 503 (too many requests in progress, with `Retry-After`) and 504 (past the
/// request timeout).
struct EdgeAnswers;

impl utoipa::Modify for EdgeAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    audit_sdk::problem::CONTENT_TYPE,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                if op.request_body.is_some() {
                    responses
                        .entry("413".into())
                        .or_insert_with(|| problem("Body over max_body_bytes").into());
                    responses
                        .entry("415".into())
                        .or_insert_with(|| problem("Content-Type is not application/json").into());
                }
                responses.entry("503".into()).or_insert_with(|| {
                    problem("Too many requests in progress or store unavailable; retry after Retry-After").into()
                });
                responses
                    .entry("504".into())
                    .or_insert_with(|| problem("Not finished within the request timeout").into());
            }
        }
    }
}

/// Serves the generated document.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
