//! The HTTP surface: one router per listener (API, health, metrics).
//!
//! Handlers parse, call the store or the domain, and map errors once through
//! [`problem::ApiError`]; no business rule lives here.

use std::sync::Arc;

use audit_sdk::api;
use audit_sdk::problem::ProblemType;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::Method;
use axum::routing::{delete, get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use auth::{Auth, Verb};

use crate::config::{ChainConfig, LimitsConfig};
use crate::domain::chain::ChainHasher;
use crate::domain::checkpoint::CheckpointKeys;
use crate::store::EventStore;
use service_kit::readiness::Readiness;

mod body;
mod checkpoints;
mod export;
pub mod grpc;
mod health;
mod ingest;
pub mod json_cost;
mod legal_hold;
mod load;
pub mod memory_budget;
pub mod openapi;
pub mod problem;
mod query;
mod uuid_path;
mod verify;

use problem::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Chain hashing, for verification.
    pub hasher: ChainHasher,
    /// Chain settings (verification chunk size, checkpoints).
    pub chain: ChainConfig,
    /// The checkpoint signer, which also signs exports.
    pub keys: CheckpointKeys,
    /// Lifecycle phase, for `/readyz`.
    pub readiness: Readiness,
    /// Authentication and verb checks of the API routes.
    pub auth: Auth,
    /// Memory parsed ingest bodies may hold at once.
    pub memory: memory_budget::MemoryBudget,
}

/// Verbs a query accepts: `list`, or `get` alone (roles written for the
/// reference platform grant its readers `get` only, for every GET).
const QUERY: &[Verb] = &[Verb::List, Verb::Get];
/// Verbs a read of one thing (an event, a chain's verification, checkpoints,
/// an export) accepts: `get`, or `list` (a reader granted list reads too).
const READ: &[Verb] = &[Verb::Get, Verb::List];

/// The API listener's routes (port 8080).
///
/// Each route names the verbs it accepts on the `data-storage-service`
/// Service (any one granted suffices): writes `create`; queries `list` or
/// `get`; reads of one event, chain verification, checkpoints and exports
/// `get` or `list`; legal hold `update`. `/readyz` and the OpenAPI document
/// are open.
pub fn api_router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    let auth = state.auth.clone();
    let load = load::LoadLimits::new(
        state.limits.max_concurrent_requests,
        state.limits.request_timeout,
    );
    // Outside the load limits: probes and the document must answer under load.
    let open = Router::new()
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route(api::READYZ_PATH, get(health::readyz))
        .with_state(state.clone());
    Router::new()
        .route(
            api::EVENTS_PATH,
            post(ingest::post_event)
                .route_layer(auth.require(Verb::Create))
                .merge(get(query::list_events).route_layer(auth.require_any(QUERY))),
        )
        .route(
            api::BATCH_PATH,
            post(ingest::post_batch).route_layer(auth.require(Verb::Create)),
        )
        .route(
            "/api/v1/audit/events/{event_id}",
            get(query::get_event).route_layer(auth.require_any(READ)),
        )
        .route(
            api::VERIFY_CHAIN_PATH,
            post(verify::verify_chain).route_layer(auth.require_any(READ)),
        )
        .route(
            checkpoints::CHECKPOINTS_PATH,
            get(checkpoints::list).route_layer(auth.require_any(READ)),
        )
        .route(
            "/api/v1/audit/checkpoints/latest",
            get(checkpoints::latest).route_layer(auth.require_any(READ)),
        )
        .route(
            "/api/v1/audit/checkpoints/{checkpoint_id}",
            get(checkpoints::get_one).route_layer(auth.require_any(READ)),
        )
        .route(
            export::EXPORT_PATH,
            get(export::export).route_layer(auth.require_any(READ)),
        )
        .route(
            api::LEGAL_HOLD_PATH,
            post(legal_hold::place)
                .merge(get(legal_hold::list))
                .route_layer(auth.require(Verb::Update)),
        )
        .route(
            "/api/v1/audit/legal-hold/{correlation_id}",
            delete(legal_hold::release).route_layer(auth.require(Verb::Update)),
        )
        .route(
            "/api/v1/audit/legal-hold/{correlation_id}/history",
            get(legal_hold::history).route_layer(auth.require(Verb::Update)),
        )
        .with_state(state.clone())
        .merge(grpc::routes(state).route_layer(auth.require(Verb::Create)))
        .route_layer(axum::middleware::from_fn_with_state(load, load::limit))
        .merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            crate::telemetry::HTTP_METRICS,
            service_kit::http_metrics::track,
        ))
}

/// The health listener's routes (port 8081).
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route(api::READYZ_PATH, get(health::readyz))
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
