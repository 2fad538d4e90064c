//! `POST /api/v1/audit/events` and `POST /api/v1/audit/events/batch`.

use std::time::Instant;

use audit_sdk::api::{BatchCreated, BatchResponse, EventCreated};
use audit_sdk::{AuditEvent, Problem};
use auth::Identity;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use chrono::Utc;

use super::body::{BatchBody, EventBody};
use super::problem::ApiError;
use super::AppState;
use crate::domain::ingest::{attribute_actor, prepare_batch_json, prepare_one};
use crate::telemetry::names;

/// Stores a batch of events, all or nothing, idempotent on `event_id`.
#[utoipa::path(
    post,
    path = "/api/v1/audit/events/batch",
    tag = "ingest",
    request_body(content = Vec<AuditEvent>, description = "1..=max_batch_size events"),
    responses(
        (status = 201, description = "Every event is stored (now or before)", body = BatchCreated),
        (status = 400, description = "Malformed body, or one or more invalid events (nothing stored)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An event_id is already stored (or repeated in the batch) with different content; `errors` names each index; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over max_body_bytes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn post_batch(
    State(state): State<AppState>,
    caller: Option<Extension<Identity>>,
    BatchBody(body, _parsed): BatchBody,
) -> Result<(StatusCode, axum::Json<BatchCreated>), ApiError> {
    let mut events = prepare_batch_json(&body, state.limits.max_batch_size, Utc::now())?;
    attribute_actor(&mut events, caller.as_deref());
    let batch = store(&state, events).await?;
    let message = format!(
        "{} event(s) stored, {} already stored",
        batch.created, batch.duplicates
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(BatchCreated { batch, message }),
    ))
}

/// Stores one event, idempotent on `event_id`.
#[utoipa::path(
    post,
    path = "/api/v1/audit/events",
    tag = "ingest",
    request_body = AuditEvent,
    responses(
        (status = 201, description = "Stored now, or already stored earlier with the same content (`duplicates` is then 1 and nothing is stored again). 201 either way: the status the reference platform's client declares", body = EventCreated),
        (status = 400, description = "Malformed or invalid event", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The event_id is already stored with different content", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn post_event(
    State(state): State<AppState>,
    caller: Option<Extension<Identity>>,
    EventBody(value, _parsed): EventBody,
) -> Result<(StatusCode, axum::Json<EventCreated>), ApiError> {
    let mut events = vec![prepare_one(value, Utc::now())?];
    attribute_actor(&mut events, caller.as_deref());
    let (event_id, event_timestamp) = (
        events[0].event_id.unwrap_or_default(),
        events[0].event_timestamp,
    );
    let batch = store(&state, events)
        .await
        .map_err(ApiError::without_index)?;
    let message = if batch.created == 1 {
        format!("audit event {event_id} stored")
    } else {
        format!("audit event {event_id} was already stored; not stored again")
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(EventCreated {
            event_id,
            event_timestamp,
            message,
            batch,
        }),
    ))
}

pub(super) async fn store(
    state: &AppState,
    events: Vec<AuditEvent>,
) -> Result<BatchResponse, ApiError> {
    let event_ids = events.iter().filter_map(|e| e.event_id).collect();
    let started = Instant::now();
    let outcome = state.store.insert_batch(events).await?;
    metrics::histogram!(names::WRITE_DURATION).record(started.elapsed().as_secs_f64());
    if !outcome.conflicts.is_empty() {
        metrics::counter!(names::EVENT_ID_CONFLICTS).increment(outcome.conflicts.len() as u64);
        return Err(ApiError::id_conflicts(&outcome.conflicts));
    }
    metrics::counter!(names::EVENTS_STORED).increment(outcome.created as u64);
    metrics::counter!(names::EVENTS_DUPLICATE).increment(outcome.duplicates as u64);
    Ok(BatchResponse {
        event_ids,
        created: outcome.created,
        duplicates: outcome.duplicates,
    })
}
