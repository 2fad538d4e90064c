//! A path segment that must be a UUID (`{event_id}`, `{checkpoint_id}`): one
//! extractor, so every such route answers the same 400 naming its parameter.

use audit_sdk::problem::ProblemType;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use uuid::Uuid;

use super::problem::ApiError;

/// The route's last path parameter, parsed as a UUID.
#[derive(Debug, Clone, Copy)]
pub struct UuidPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for UuidPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(ProblemType::InvalidQuery, e.body_text()))?;
        let (name, raw) = params.into_iter().last().unwrap_or_default();
        Uuid::parse_str(&raw).map(Self).map_err(|_| {
            ApiError::new(
                ProblemType::InvalidQuery,
                format!("{name} must be a UUID, got {raw:?}"),
            )
        })
    }
}
