//! `GET /api/v1/audit/events` and `GET /api/v1/audit/events/{event_id}`.

use std::collections::HashMap;

use audit_sdk::api::{EventPage, Pagination};
use audit_sdk::problem::ProblemType;
use audit_sdk::{Problem, StoredEvent};
use axum::extract::{Query, State};
use axum::Json;
use chrono::Utc;

use super::problem::ApiError;
use super::uuid_path::UuidPath;
use super::AppState;
use crate::domain::query::{Cursor, EventQuery};

/// Lists events newest first, filtered, one page at a time (keyset `cursor`,
/// or the reference platform's `offset`), with the total count of matches.
#[utoipa::path(
    get,
    path = "/api/v1/audit/events",
    tag = "query",
    params(
        ("correlation_id" = Option<String>, Query, description = "Exact correlation id. An empty value is no filter, as are empty values of every other parameter; parameters this API does not know are ignored"),
        ("event_type" = Option<String>, Query, description = "Exact event type"),
        ("event_category" = Option<String>, Query, description = "Exact category"),
        ("event_outcome" = Option<String>, Query, description = "success, failure or pending"),
        ("severity" = Option<String>, Query, description = "Exact severity"),
        ("since" = Option<String>, Query, description = "Inclusive lower bound: RFC 3339, a date (2006-01-02, midnight UTC), a UTC time without zone (2006-01-02T15:04:05), or a duration back from now (15m, 1h30m, 24h, 7d)"),
        ("until" = Option<String>, Query, description = "Inclusive upper bound, in the forms of since"),
        ("detail_key" = Option<String>, Query, description = "With detail_value: only events whose event_data has this top-level key with a string value equal to detail_value (at most 255 characters)"),
        ("detail_value" = Option<String>, Query, description = "The value detail_key must have"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Page size, 1..=1000, default 100; an integer outside that range is a 400"),
        ("offset" = Option<usize>, Query, minimum = 0, maximum = 100000, description = "Events to skip, 0..=100000, default 0 (after cursor when both are given); page deeper with cursor"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = EventPage),
        (status = 400, description = "A parameter this API knows has an invalid value", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<EventPage>, ApiError> {
    let query = EventQuery::parse(&params, Utc::now()).map_err(ApiError::invalid_query)?;
    let total = state.store.count(&query).await?;
    let mut data = state.store.query(&query).await?;
    let has_more = data.len() > query.limit;
    data.truncate(query.limit);
    let next_cursor = if has_more {
        data.last().map(|last| {
            Cursor {
                timestamp_micros: last.event.event_timestamp.timestamp_micros(),
                event_id: last.event_id(),
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(EventPage {
        data,
        pagination: Pagination {
            limit: query.limit,
            offset: query.offset,
            total,
            has_more,
            next_cursor,
        },
    }))
}

/// One event by id.
#[utoipa::path(
    get,
    path = "/api/v1/audit/events/{event_id}",
    tag = "query",
    params(("event_id" = Uuid, Path, description = "The event's id")),
    responses(
        (status = 200, body = StoredEvent),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_event(
    State(state): State<AppState>,
    UuidPath(event_id): UuidPath,
) -> Result<Json<StoredEvent>, ApiError> {
    match state.store.get(event_id).await? {
        Some(event) => Ok(Json(event)),
        None => Err(ApiError::new(
            ProblemType::NotFound,
            format!("no audit event with id {event_id}"),
        )),
    }
}
