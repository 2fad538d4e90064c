//! `POST /api/v1/signals/prometheus`: AlertManager webhooks (v4; Grafana's
//! `"1"` and bodies without `version` alike). Each alert is parsed and
//! processed on its own, in order: a firing alert creates or joins a
//! RemediationRequest, a resolved one is recorded on it or ignored.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::body::{check_freshness, JsonBody};
use super::problem::ApiError;
use super::response::{bounded, multi, single, Processed};
use super::AppState;
use crate::domain::intake::Outcome;
use crate::domain::signal::{parse_webhook, Alert, SignalSource};
use crate::telemetry::names;

const SOURCE: SignalSource = SignalSource::Prometheus;

/// Handles one webhook.
pub async fn post_webhook(
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
    let alerts = parse_webhook(body, now, &state.signals)?;
    let intake = state.intake.clone();
    let processed = bounded(state.request_timeout, async move {
        let mut out = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let result = match alert {
                Ok(Alert::Firing(signal)) => Ok(intake.process(signal).await),
                Ok(Alert::Resolved(signal)) => Ok(intake.resolve(signal).await),
                Ok(Alert::ResolvedWithoutTarget(_)) => {
                    metrics::counter!(names::SIGNALS_IGNORED, "source" => SOURCE.as_str())
                        .increment(1);
                    Ok(Ok(Outcome::Ignored { fingerprint: None }))
                }
                Err(invalid) => Err(invalid),
            };
            out.push(match result {
                Ok(Ok(outcome)) => Processed::Done(outcome),
                Ok(Err(failure)) => Processed::Failed(failure),
                Err(invalid) => {
                    metrics::counter!(names::SIGNALS_REJECTED, "source" => SOURCE.as_str(), "reason" => "validation-error")
                        .increment(1);
                    Processed::Rejected(invalid)
                }
            });
        }
        out
    })
    .await?;
    let namespace = state.intake.request_namespace();
    Ok(if processed.len() == 1 {
        single(processed.into_iter().next().expect("one result"), namespace)
    } else {
        multi(processed, namespace)
    })
}
