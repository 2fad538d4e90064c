//! `/healthz` (the process is alive) and `/readyz` (send me traffic).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use service_kit::readiness::Phase;

/// Liveness: answers as long as the process can serve HTTP at all.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 only while serving and while the store answers a ping.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let phase = state.readiness.phase();
    if phase != Phase::Ready {
        let status = if phase == Phase::Starting {
            "starting"
        } else {
            "shutting_down"
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": status })),
        );
    }
    // Without the RBAC for its reviews no caller can be authenticated.
    if let Err(e) = state.auth.check_ready().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "auth_unavailable", "auth": e.to_string() })),
        );
    }
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "store": "ok" })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store ping failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "store_unavailable", "store": e.to_string() })),
            )
        }
    }
}
