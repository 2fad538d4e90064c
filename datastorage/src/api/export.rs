//! `GET /api/v1/audit/export`: the reference platform's signed export, with
//! our chain proofs inside (see [`crate::domain::export`]).
//!
//! The answer streams: rows are read in chunks of `chain.verify_chunk_size`
//! from one snapshot and written as they come, so an export of the largest
//! `limit` costs two chunks of memory, not the whole document. The first chunk
//! is read before the 200 is sent, so a store that is down answers 503 (a
//! failure later cuts the body short, which no reader takes for a whole export).

use std::collections::HashMap;

use audit_sdk::problem::ProblemType;
use audit_sdk::{FieldError, Problem};
use auth::Identity;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::Utc;

use super::problem::ApiError;
use super::AppState;
use crate::domain::export::{ExportWriter, QueryFilters, DEFAULT_LIMIT, MAX_LIMIT};
use crate::domain::query::{parse_time_bound, EventQuery};
use crate::store::{ExportChunk, ExportChunks, StoreError};

/// Path of the export.
pub const EXPORT_PATH: &str = "/api/v1/audit/export";

/// What the caller asked for.
#[derive(Debug)]
struct ExportRequest {
    filters: QueryFilters,
    detached: bool,
}

/// Why the parameters were refused.
#[derive(Debug)]
enum Refused {
    /// Every bad parameter (400).
    Invalid(Vec<FieldError>),
    /// `limit` above [`MAX_LIMIT`] (413, as the reference answers it).
    TooMany(usize),
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Invalid(errors) => ApiError::invalid_query(errors),
            Refused::TooMany(limit) => ApiError::new(
                ProblemType::PayloadTooLarge,
                format!(
                    "limit {limit} exceeds the export maximum of {MAX_LIMIT} events; page with offset"
                ),
            ),
        }
    }
}

/// Reads the parameters as the reference does (empty = absent, unknown ones
/// ignored), reporting every bad one at once.
fn parse(params: &HashMap<String, String>) -> Result<ExportRequest, Refused> {
    let now = Utc::now();
    let mut errors = Vec::new();
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let mut time = |name: &str| {
        let raw = text(name)?;
        let parsed = parse_time_bound(&raw, now);
        if parsed.is_none() {
            errors.push(FieldError::new(
                name,
                format!("must be an RFC 3339 timestamp (2026-01-07T20:30:00Z), a date, or a duration back from now (24h); got {raw:?}"),
            ));
        }
        parsed
    };
    let start_time = time("start_time");
    let end_time = time("end_time");
    let mut flag = |name: &str| match text(name).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            errors.push(FieldError::new(
                name,
                format!("must be true or false, got {other:?}"),
            ));
            false
        }
    };
    let detached = flag("include_detached_signature");
    let redact_pii = flag("redact_pii");
    if let (Some(s), Some(e)) = (start_time, end_time) {
        if s > e {
            errors.push(FieldError::new("start_time", "must not be after end_time"));
        }
    }
    match text("format").as_deref() {
        None | Some("json") => {}
        Some(other) => errors.push(FieldError::new(
            "format",
            format!("only json is served (the export's proofs are JSON); got {other:?}"),
        )),
    }
    let offset = match text("offset") {
        None => 0,
        Some(raw) => raw.parse::<usize>().unwrap_or_else(|_| {
            errors.push(FieldError::new(
                "offset",
                format!("must be a non-negative integer, got {raw:?}"),
            ));
            0
        }),
    };
    let limit = match text("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be a positive integer, got {raw:?}"),
                ));
                DEFAULT_LIMIT
            }
        },
    };
    if !errors.is_empty() {
        return Err(Refused::Invalid(errors));
    }
    if limit > MAX_LIMIT {
        return Err(Refused::TooMany(limit));
    }
    Ok(ExportRequest {
        filters: QueryFilters {
            start_time,
            end_time,
            correlation_id: text("correlation_id"),
            event_category: text("event_category"),
            offset,
            limit,
            redact_pii,
        },
        detached,
    })
}

/// Exports events with their chain proofs and a signature over the export.
#[utoipa::path(
    get,
    path = "/api/v1/audit/export",
    tag = "integrity",
    params(
        ("start_time" = Option<String>, Query, description = "Inclusive lower bound on event_timestamp: RFC 3339 (also a date, a UTC time without zone, or a duration back from now)"),
        ("end_time" = Option<String>, Query, description = "Inclusive upper bound on event_timestamp, in the forms of start_time"),
        ("correlation_id" = Option<String>, Query, description = "Exact correlation id"),
        ("event_category" = Option<String>, Query, description = "Exact category"),
        ("format" = Option<String>, Query, description = "json (the default and the only format served: csv is a 400)"),
        ("include_detached_signature" = Option<bool>, Query, description = "Add detached_signature, the signature as a PEM-style block naming algorithm and key"),
        ("offset" = Option<usize>, Query, minimum = 0, description = "Events to skip in (correlation_id, chain_seq) order, default 0"),
        ("limit" = Option<usize>, Query, minimum = 1, description = "Most events, default 1000; above 10000 is a 413 (page with offset)"),
        ("redact_pii" = Option<bool>, Query, description = "Mask event_data.user_email, source_ip, phone_number, actor_ip and an e-mail exported_by; masked events say redacted=true (their hashes cannot be recomputed from the file, their chain places still are)"),
    ),
    responses(
        (status = 200, description = "The export: events in (correlation_id, chain_seq) order with their chain fields, each chain's range and head, the server's check, and export_metadata.signature (base64, by the checkpoint signer) over all of it; `datastorage verify-export FILE` checks it offline", body = crate::domain::export::AuditExport),
        (status = 400, description = "A parameter has an invalid value", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "limit above 10000: page with offset", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Option<Extension<Identity>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let request = parse(&params)?;
    let f = &request.filters;
    let query = EventQuery {
        correlation_id: f.correlation_id.clone(),
        event_category: f.event_category.clone(),
        since: f.start_time,
        until: f.end_time,
        limit: f.limit,
        offset: f.offset,
        ..EventQuery::default()
    };
    let latest = state.store.checkpoints(1).await?.into_iter().next();
    let mut chunks = state
        .store
        .export_chunks(&query, state.chain.verify_chunk_size)
        .await?;
    let first = chunks.recv().await.transpose()?;
    let exported_by = caller.map_or_else(|| "anonymous".to_owned(), |c| c.subject.clone());
    tracing::info!(exported_by = %exported_by, filters = ?request.filters, "audit export");
    let writer = ExportWriter::new(
        state.hasher.clone(),
        state.keys.clone(),
        request.filters,
        exported_by,
        latest,
    );
    let stream = Stream {
        writer: Some(writer),
        first: Some(first.unwrap_or_default()),
        chunks,
        started: false,
        detached: request.detached,
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, Stream::next));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The body's state: the writer, the chunk already read, the rest to come.
struct Stream {
    writer: Option<ExportWriter>,
    first: Option<ExportChunk>,
    chunks: ExportChunks,
    started: bool,
    detached: bool,
}

impl Stream {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        let writer = self.writer.as_mut()?;
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out = writer.start();
        }
        let chunk = match self.first.take() {
            Some(chunk) => Some(Ok(chunk)),
            None => self.chunks.recv().await,
        };
        match chunk {
            Some(Ok(chunk)) => out.extend(writer.events(chunk.heads, chunk.events)),
            Some(Err(e)) => {
                tracing::error!(error = %e, "audit export failed mid-stream; the body is cut short");
                self.writer = None;
                return Some((Err(std::io::Error::other(failed(e))), self));
            }
            None => {
                let writer = self.writer.take()?;
                out.extend(writer.finish(self.detached));
            }
        }
        Some((Ok(Bytes::from(out)), self))
    }
}

fn failed(e: StoreError) -> String {
    format!("export aborted: {e}")
}

/// The export path and schemas, merged into the API document by [`super::openapi`].
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(export),
    components(schemas(
        crate::domain::export::AuditExport,
        crate::domain::export::ExportedEvent,
        crate::domain::export::ExportChain,
        crate::domain::export::ExportHead,
        crate::domain::export::ExportMetadata,
        crate::domain::export::QueryFilters,
        crate::domain::export::HashChainVerification,
    ))
)]
pub struct ExportDoc;
