//! `GET /api/v1/audit/checkpoints`, `…/checkpoints/latest` and
//! `…/checkpoints/{checkpoint_id}`: the signed checkpoints of every chain head
//! (see [`crate::domain::checkpoint`]). A full checkpoint is the file
//! `datastorage verify --checkpoint FILE` checks a store against offline.

use std::collections::HashMap;

use audit_sdk::problem::ProblemType;
use audit_sdk::Problem;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::problem::ApiError;
use super::uuid_path::UuidPath;
use super::AppState;
use crate::domain::checkpoint::{CheckpointSummary, SignedCheckpoint};

/// Path of the checkpoint list.
pub const CHECKPOINTS_PATH: &str = "/api/v1/audit/checkpoints";
/// Most checkpoints in one list answer, and the default.
const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 20;

/// Answer of the checkpoint list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointList {
    /// Newest first, without their heads.
    pub checkpoints: Vec<CheckpointSummary>,
}

/// The newest checkpoints, newest first, without their heads.
#[utoipa::path(
    get,
    path = "/api/v1/audit/checkpoints",
    tag = "integrity",
    params(
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 100, description = "How many, 1..=100, default 20"),
    ),
    responses(
        (status = 200, body = CheckpointList),
        (status = 400, description = "Invalid limit", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<CheckpointList>, ApiError> {
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    ProblemType::InvalidQuery,
                    format!("limit must be an integer in 1..={MAX_LIMIT}, got {raw:?}"),
                )
            })?,
    };
    let checkpoints = state.store.checkpoints(limit).await?;
    Ok(Json(CheckpointList { checkpoints }))
}

/// The newest checkpoint with every head it covers.
#[utoipa::path(
    get,
    path = "/api/v1/audit/checkpoints/latest",
    tag = "integrity",
    responses(
        (status = 200, body = SignedCheckpoint),
        (status = 404, description = "No checkpoint taken yet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn latest(State(state): State<AppState>) -> Result<Json<SignedCheckpoint>, ApiError> {
    let checkpoint = state.store.checkpoint(None).await?;
    checkpoint
        .map(Json)
        .ok_or_else(|| not_found("no checkpoint has been taken yet"))
}

/// One checkpoint with every head it covers.
#[utoipa::path(
    get,
    path = "/api/v1/audit/checkpoints/{checkpoint_id}",
    tag = "integrity",
    params(("checkpoint_id" = Uuid, Path, description = "The checkpoint")),
    responses(
        (status = 200, body = SignedCheckpoint),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such checkpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    UuidPath(id): UuidPath,
) -> Result<Json<SignedCheckpoint>, ApiError> {
    let checkpoint = state.store.checkpoint(Some(id)).await?;
    checkpoint
        .map(Json)
        .ok_or_else(|| not_found(&format!("no checkpoint {id}")))
}

fn not_found(missing: &str) -> ApiError {
    ApiError::new(ProblemType::NotFound, missing.to_owned())
}

/// The checkpoint paths and schemas, merged into the API document by
/// [`super::openapi`] (kept here so the document's main list stays untouched).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(list, latest, get_one),
    components(schemas(
        CheckpointList,
        SignedCheckpoint,
        CheckpointSummary,
        crate::domain::checkpoint::CheckpointHead,
    ))
)]
pub struct CheckpointsDoc;
