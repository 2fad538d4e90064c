//! `POST /api/v1/signals/kubernetes-event`: one core/v1 Event of type `Warning`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::body::{check_age, check_freshness, JsonBody};
use super::problem::ApiError;
use super::response::{bounded, single, Processed};
use super::AppState;
use crate::domain::signal::{event_last_observed, parse_kubernetes_event, SignalSource};
use crate::telemetry::names;

const SOURCE: SignalSource = SignalSource::KubernetesEvent;

/// Handles one event.
pub async fn post_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Response {
    match handle(state, headers, body).await {
        Ok(response) => response,
        Err(e) => {
            metrics::counter!(names::SIGNALS_REJECTED, "source" => SOURCE.as_str(), "reason" => e.reason().to_owned())
                .increment(1);
            e.into_response()
        }
    }
}

async fn handle(
    state: AppState,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    check_freshness(
        &headers,
        now,
        state.limits.max_signal_age,
        state.limits.max_clock_skew,
    )?;
    let JsonBody(body) = body?;
    if let Some(observed) = event_last_observed(&body) {
        check_age(
            "the event's last observation (lastTimestamp, eventTime, series.lastObservedTime)",
            observed,
            now,
            state.limits.max_signal_age,
            state.limits.max_clock_skew,
        )?;
    }
    let signal = parse_kubernetes_event(body, now)?;
    let intake = state.intake.clone();
    let processed = bounded(state.request_timeout, async move {
        match intake.process(signal).await {
            Ok(outcome) => Processed::Done(outcome),
            Err(failure) => Processed::Failed(failure),
        }
    })
    .await?;
    Ok(single(processed, state.intake.request_namespace()))
}
