//! `/healthz` (the process is alive) and `/readyz` (send me signals).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use audit_sdk::Readiness;

use super::AppState;
use service_kit::readiness::Phase;

/// Longest time `/readyz` waits for the backend's answer.
const BACKEND_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: answers as long as the process can serve HTTP at all.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 while serving, the audit SDK can keep this Gateway's audit
/// trail and the remediation backend answers (API server up, CRD installed).
///
/// Readiness never cascades (design.md): not Ready until DataStorage has
/// answered once after start (a wrong `data_storage_url` stalls the rollout),
/// then Ready while the SDK's spool has room. A later DataStorage outage is
/// `"data_storage": "degraded"` in this body, the SDK's `audit_sdk_readiness`
/// gauge and one log line from the SDK's probe, not a 503.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let phase = state.lifecycle.phase();
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
    let audit = state.intake.audit().store().readiness();
    let backend = state.intake.backend();
    let backend_check =
        match tokio::time::timeout(BACKEND_CHECK_TIMEOUT, backend.check_ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {}s",
                BACKEND_CHECK_TIMEOUT.as_secs()
            )),
        };
    // Without the RBAC for its reviews no caller can be authenticated.
    let auth_check = state.auth.check_ready().await.map_err(|e| e.to_string());
    let ready = audit.is_serving() && backend_check.is_ok() && auth_check.is_ok();
    let (data_storage, data_storage_reason) = match &audit {
        Readiness::Ready => ("ok", None),
        Readiness::Degraded(reason) => ("degraded", Some(reason.clone())),
        Readiness::Down(reason) => ("unreachable", Some(reason.clone())),
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "auth": match &auth_check { Ok(()) => "ok".to_owned(), Err(e) => e.clone() },
        "data_storage": data_storage,
        "data_storage_reason": data_storage_reason,
        "backend": backend.name(),
        "backend_status": match &backend_check { Ok(()) => "ok".to_owned(), Err(e) => e.clone() },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
