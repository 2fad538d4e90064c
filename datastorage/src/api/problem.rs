//! The one place where errors become RFC 7807 responses.

use audit_sdk::problem::{ProblemType, CONTENT_TYPE};
use audit_sdk::{FieldError, Problem};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::ingest::IngestError;
use crate::store::StoreError;

/// Seconds a client is told to wait when the store is unavailable.
pub const RETRY_AFTER_SECS: u64 = 5;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    problem: Problem,
    retry_after: Option<u64>,
}

impl ApiError {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem: Problem::new(kind, detail),
            retry_after: None,
        }
    }

    /// A validation problem listing every field error.
    pub fn validation(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            problem: Problem::new(ProblemType::ValidationError, detail).with_errors(errors),
            retry_after: None,
        }
    }

    /// The problem document this error answers with.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// 503 with `Retry-After`: too much work in progress.
    pub fn overloaded(detail: impl Into<String>) -> Self {
        Self {
            problem: Problem::new(ProblemType::ServiceUnavailable, detail),
            retry_after: Some(RETRY_AFTER_SECS),
        }
    }

    /// Events whose `event_id` is already used by other content (batch indexes).
    pub fn id_conflicts(indexes: &[usize]) -> Self {
        let errors = indexes
            .iter()
            .map(|&i| {
                FieldError::new(
                    "event_id",
                    "is already stored (or used earlier in this batch) with different content; \
                     give each event its own id",
                )
                .at(i)
            })
            .collect();
        Self {
            problem: Problem::new(
                ProblemType::Conflict,
                format!(
                    "{} event(s) reuse an event_id with different content; nothing was stored",
                    indexes.len()
                ),
            )
            .with_errors(errors),
            retry_after: None,
        }
    }

    /// The same error without batch indexes (for the single-event endpoint).
    pub fn without_index(mut self) -> Self {
        for e in &mut self.problem.errors {
            e.index = None;
        }
        self
    }

    /// An invalid query listing every bad parameter.
    pub fn invalid_query(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            problem: Problem::new(ProblemType::InvalidQuery, detail).with_errors(errors),
            retry_after: None,
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Invalid(errors) => {
                metrics::counter!(crate::telemetry::names::VALIDATION_FAILURES).increment(1);
                let detail = format!("{} problem(s) found; nothing was stored", errors.len());
                Self::validation(detail, errors)
            }
            IngestError::TooLarge { .. } => Self::new(ProblemType::BatchTooLarge, e.to_string()),
            IngestError::Empty => Self::new(ProblemType::ValidationError, e.to_string()),
            IngestError::Malformed(_) => Self::new(ProblemType::MalformedJson, e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                Self {
                    problem: Problem::new(
                        ProblemType::ServiceUnavailable,
                        "the audit store is temporarily unavailable; retry later",
                    ),
                    retry_after: Some(RETRY_AFTER_SECS),
                }
            }
            StoreError::Internal(reason) => {
                tracing::error!(%reason, "store failure");
                Self::new(
                    ProblemType::InternalError,
                    "the audit store failed; see server logs",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
