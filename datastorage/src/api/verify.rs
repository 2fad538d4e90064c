//! `POST /api/v1/audit/verify-chain`.

use audit_sdk::api::{VerifyChainRequest, VerifyChainResponse};
use audit_sdk::Problem;
use axum::extract::State;
use axum::Json;

use super::body::JsonBody;
use super::problem::ApiError;
use super::AppState;
use crate::domain::verification;

/// Recomputes one correlation id's hash chain in bounded chunks, compares it
/// with the chain head kept apart from the rows, and names every tampered event
/// (a deleted tail or a deleted correlation is reported as `tail_truncated`).
/// A correlation id never stored is a valid chain of zero events, as the
/// reference platform answers it.
#[utoipa::path(
    post,
    path = "/api/v1/audit/verify-chain",
    tag = "integrity",
    request_body = VerifyChainRequest,
    responses(
        (status = 200, description = "Verification ran; `is_valid` says whether the chain is intact (200 also when tampering was found, and with zero events for an unknown correlation id)", body = VerifyChainResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_chain(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<VerifyChainRequest>,
) -> Result<Json<VerifyChainResponse>, ApiError> {
    let report = verification::verify_chain(
        state.store.as_ref(),
        &state.hasher,
        &request.correlation_id,
        state.chain.verify_chunk_size,
    )
    .await?;
    if !report.is_valid {
        tracing::warn!(
            correlation_id = %report.correlation_id,
            tampered = report.tampered_events.len(),
            "hash chain verification found tampered events"
        );
    }
    Ok(Json(report))
}
