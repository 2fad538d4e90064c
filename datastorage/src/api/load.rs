//! Bounds on the work callers can start: a global number of requests in
//! progress and a deadline for each.
//!
//! Past the limit a request is refused at once with 503 and `Retry-After`
//! instead of queueing (a queue only moves the memory problem and makes every
//! caller late); the SDK retries 503s with backoff. `/readyz` and the OpenAPI
//! document sit outside these bounds, so a saturated server still tells
//! Kubernetes it is alive and serving. tower's `ConcurrencyLimit` waits for a
//! permit rather than refusing, and `load_shed` needs an error-mapping layer
//! around it; a semaphore in one middleware says the same in fewer lines.

use std::sync::Arc;
use std::time::Duration;

use audit_sdk::problem::ProblemType;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::problem::ApiError;

/// The shared bounds, cloned into the middleware.
#[derive(Debug, Clone)]
pub struct LoadLimits {
    permits: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
}

impl LoadLimits {
    /// At most `max_concurrent` requests in progress, each for at most `timeout`.
    pub fn new(max_concurrent: usize, timeout: Duration) -> Self {
        let max = max_concurrent.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            timeout,
        }
    }
}

/// The middleware (use with `axum::middleware::from_fn_with_state`).
pub async fn limit(State(limits): State<LoadLimits>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.permits.clone().try_acquire_owned() else {
        metrics::counter!(crate::telemetry::names::REQUESTS_SHED).increment(1);
        return ApiError::overloaded(format!(
            "the server is handling its maximum of {} requests; retry later",
            limits.max
        ))
        .into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ProblemType::GatewayTimeout,
            format!(
                "the request did not finish within the server's {:?} request timeout; \
                 nothing is reported stored, retrying is safe (ingest is idempotent)",
                limits.timeout
            ),
        )
        .into_response(),
    }
}
