//! The HTTP surface: one router per listener (API, health, metrics).
//!
//! Handlers admit and parse requests, hand signals to
//! [`Intake`](crate::domain::intake::Intake) and map errors once through
//! [`problem::ApiError`]; no business rule lives here.

use std::time::Duration;

use audit_sdk::problem::ProblemType;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::Method;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use auth::{Auth, Verb};

use crate::config::{LimitsConfig, SignalsConfig};
use crate::domain::intake::Intake;
use service_kit::readiness::Readiness;

pub mod body;
mod health;
mod kubernetes_event;
pub mod problem;
mod prometheus;
pub mod response;

use problem::ApiError;

/// Route of AlertManager webhooks.
pub const PROMETHEUS_PATH: &str = "/api/v1/signals/prometheus";
/// Route of core/v1 Events.
pub const KUBERNETES_EVENT_PATH: &str = "/api/v1/signals/kubernetes-event";
/// Readiness route (health port, and API port for convenience).
pub const READYZ_PATH: &str = "/readyz";

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Signal processing.
    pub intake: Intake,
    /// Lifecycle phase, for `/readyz`.
    pub lifecycle: Readiness,
    /// Admission limits.
    pub limits: LimitsConfig,
    /// How alerts name their target (the label → Kind table).
    pub signals: SignalsConfig,
    /// Longest processing time of one request before 504.
    pub request_timeout: Duration,
    /// Authentication of the signal routes.
    pub auth: Auth,
}

/// The signal routes (`/api/v1/signals/*`): the part of the API that needs
/// authentication (verb `create` on `gateway-service`); probes and metrics
/// stay open.
pub fn signal_routes(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route(PROMETHEUS_PATH, post(prometheus::post_webhook))
        .route(KUBERNETES_EVENT_PATH, post(kubernetes_event::post_event))
        .route_layer(state.auth.require(Verb::Create))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The API listener's routes (port 8080).
pub fn api_router(state: AppState) -> Router {
    Router::new()
        .route(READYZ_PATH, get(health::readyz))
        .with_state(state.clone())
        .merge(signal_routes(state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            crate::telemetry::HTTP_METRICS,
            service_kit::http_metrics::track,
        ))
}

/// The health listener's routes (port 8081).
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route(READYZ_PATH, get(health::readyz))
        .fallback(not_found)
        .with_state(state)
}

/// The metrics listener's routes (port 9090).
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .fallback(not_found)
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        ProblemType::NotFound,
        format!("no route for {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        ProblemType::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
