//! Legal hold: `POST /api/v1/audit/legal-hold`, `DELETE
//! /api/v1/audit/legal-hold/{correlation_id}`, `GET /api/v1/audit/legal-hold`,
//! `GET /api/v1/audit/legal-hold/{correlation_id}/history`.
//!
//! A hold applies to a correlation id, not to a snapshot of its events: events
//! stored later under a held correlation are held as well. Held events cannot be
//! deleted (a database trigger refuses it) until the hold is released.

use audit_sdk::api::{
    LegalHold, LegalHoldHistory, LegalHoldList, LegalHoldReleaseRequest, LegalHoldReleased,
    LegalHoldRequest,
};
use audit_sdk::problem::ProblemType;
use audit_sdk::{FieldError, Problem};
use auth::Identity;
use axum::extract::{Path, State};
use axum::{Extension, Json};

use super::body::JsonBody;
use super::problem::ApiError;
use super::AppState;

/// Who acts, for the hold's record: the authenticated subject, else `anonymous`
/// (auth disabled, development only).
fn actor(caller: Option<Extension<Identity>>) -> String {
    caller.map_or_else(|| "anonymous".to_owned(), |c| c.subject.clone())
}

/// A problem with a free-text field: blank or longer than `max` characters.
fn check_text(field: &str, value: &str, max: usize) -> Option<FieldError> {
    let len = value.chars().count();
    (value.trim().is_empty() || len > max)
        .then(|| FieldError::new(field, format!("must be 1..={max} characters, not blank")))
}

/// One validation problem listing every bad field, if any.
fn invalid(errors: Vec<Option<FieldError>>) -> Option<ApiError> {
    let errors: Vec<FieldError> = errors.into_iter().flatten().collect();
    let detail = format!("{} problem(s) found; nothing was changed", errors.len());
    (!errors.is_empty()).then(|| ApiError::validation(detail, errors))
}

/// Places a legal hold on every event of a correlation id, present and future.
#[utoipa::path(
    post,
    path = "/api/v1/audit/legal-hold",
    tag = "legal-hold",
    request_body = LegalHoldRequest,
    responses(
        (status = 200, description = "Hold placed, or already held (the existing hold is unchanged). 200 either way, the status the reference platform declares; `events_affected` counts the events held now, and events stored later under the correlation are held too", body = LegalHold),
        (status = 400, description = "Malformed or invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn place(
    State(state): State<AppState>,
    caller: Option<Extension<Identity>>,
    JsonBody(request): JsonBody<LegalHoldRequest>,
) -> Result<Json<LegalHold>, ApiError> {
    if let Some(problem) = invalid(vec![
        check_text("correlation_id", &request.correlation_id, 255),
        check_text("reason", &request.reason, 1000),
    ]) {
        return Err(problem);
    }
    let by = actor(caller);
    let (hold, created) = state
        .store
        .place_legal_hold(&request.correlation_id, &request.reason, &by)
        .await?;
    if created {
        tracing::info!(correlation_id = %hold.correlation_id, placed_by = %by,
            reason = %hold.reason, events = hold.events_affected, "legal hold placed");
    }
    Ok(Json(hold))
}

/// Releases the legal hold of a correlation id.
#[utoipa::path(
    delete,
    path = "/api/v1/audit/legal-hold/{correlation_id}",
    tag = "legal-hold",
    params(("correlation_id" = String, Path, description = "The held correlation id")),
    request_body = LegalHoldReleaseRequest,
    responses(
        (status = 200, description = "Hold released", body = LegalHoldReleased),
        (status = 400, description = "Malformed or invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No hold on this correlation id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn release(
    State(state): State<AppState>,
    caller: Option<Extension<Identity>>,
    Path(correlation_id): Path<String>,
    JsonBody(request): JsonBody<LegalHoldReleaseRequest>,
) -> Result<Json<LegalHoldReleased>, ApiError> {
    if let Some(problem) = invalid(vec![check_text(
        "release_reason",
        &request.release_reason,
        1000,
    )]) {
        return Err(problem);
    }
    let by = actor(caller);
    let released = state
        .store
        .release_legal_hold(&correlation_id, &request.release_reason, &by)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ProblemType::NotFound,
                format!("no legal hold on correlation_id {correlation_id:?}"),
            )
        })?;
    tracing::info!(%correlation_id, released_by = %by, release_reason = %released.release_reason,
        events = released.events_released, "legal hold released");
    Ok(Json(released))
}

/// Every active legal hold, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit/legal-hold",
    tag = "legal-hold",
    responses(
        (status = 200, body = LegalHoldList),
        (status = 503, description = "Store unavailable; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<LegalHoldList>, ApiError> {
    let holds = state.store.legal_holds().await?;
    Ok(Json(LegalHoldList {
        total: holds.len(),
        holds,
    }))
}

/// The legal-hold journal of a correlation id: every placement and release, with
/// who, when and why, oldest first. Never held: an empty history, not a 404.
#[utoipa::path(
    get,
    path = "/api/v1/audit/legal-hold/{correlation_id}/history",
    tag = "legal-hold",
    params(("correlation_id" = String, Path, description = "The correlation id")),
    responses(
        (status = 200, description = "The journal, oldest first (empty when never held)", body = LegalHoldHistory),
        (status = 503, description = "Store unavailable; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
) -> Result<Json<LegalHoldHistory>, ApiError> {
    let history = state.store.legal_hold_history(&correlation_id).await?;
    Ok(Json(LegalHoldHistory {
        correlation_id,
        history,
    }))
}
