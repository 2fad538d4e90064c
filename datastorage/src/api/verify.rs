//! `POST /api/v1/audit/verify-chain`.

use audit_sdk::api::{VerifyChainRequest, VerifyChainResponse};
use audit_sdk::problem::ProblemType;
use audit_sdk::Problem;
use axum::extract::State;
use axum::Json;

use super::body::JsonBody;
use super::problem::ApiError;
use super::AppState;

/// Recomputes one correlation id's hash chain, compares it with the chain head
/// kept apart from the rows, and names every tampered event (a deleted tail or a
/// deleted correlation is reported as `tail_truncated`).
#[utoipa::path(
    post,
    path = "/api/v1/audit/verify-chain",
    tag = "integrity",
    request_body = VerifyChainRequest,
    responses(
        (status = 200, body = VerifyChainResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No event of this correlation id was ever stored", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_chain(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<VerifyChainRequest>,
) -> Result<Json<VerifyChainResponse>, ApiError> {
    let (chain, head) = state.store.chain_with_head(&request.correlation_id).await?;
    if chain.is_empty() && head.is_none() {
        return Err(ApiError::new(
            ProblemType::NotFound,
            format!(
                "no audit events with correlation_id {:?}",
                request.correlation_id
            ),
        ));
    }
    let hasher = state.hasher.clone();
    let correlation_id = request.correlation_id;
    // Hashing a long chain is CPU work; keep it off the async workers.
    let report = tokio::task::spawn_blocking(move || {
        hasher.verify_with_head(&correlation_id, &chain, head.as_ref())
    })
    .await
    .map_err(|e| ApiError::new(ProblemType::InternalError, e.to_string()))?;
    if !report.is_valid {
        tracing::warn!(
            correlation_id = %report.correlation_id,
            tampered = report.tampered_events.len(),
            "hash chain verification found tampered events"
        );
    }
    Ok(Json(report))
}
