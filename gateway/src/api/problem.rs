//! The one place where errors become RFC 7807 responses.

use audit_sdk::problem::{ProblemType, CONTENT_TYPE};
use audit_sdk::{FieldError, Problem};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::intake::Failure;
use crate::domain::signal::InvalidSignal;
use crate::remediation::BackendError;

/// Seconds a sender is told to wait when the backend is unavailable.
pub const RETRY_AFTER_SECS: u64 = 5;

/// An error answer of the signal API.
#[derive(Debug)]
pub struct ApiError {
    // Boxed: handlers return `Result<_, ApiError>` and the document is large.
    problem: Box<Problem>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem::new(kind, detail)),
            retry_after: None,
        }
    }

    /// Replaces the problem's detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.problem.detail = Some(detail.into());
        self
    }

    /// Lists per-item problems (`errors`).
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.problem.errors = errors;
        self
    }

    /// The problem document this error answers with.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// A stable, short reason for the rejected-signals metric.
    pub fn reason(&self) -> &str {
        self.problem
            .problem_type
            .strip_prefix(audit_sdk::problem::TYPE_BASE)
            .unwrap_or("unknown")
    }
}

impl From<InvalidSignal> for ApiError {
    fn from(e: InvalidSignal) -> Self {
        Self {
            problem: Box::new(
                Problem::new(ProblemType::ValidationError, e.to_string())
                    .with_errors(vec![FieldError::new(e.field, e.message)]),
            ),
            retry_after: None,
        }
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f.error {
            BackendError::Rejected(_) => Self::new(
                ProblemType::InternalError,
                format!("the RemediationRequest could not be created: {}", f.error),
            ),
            BackendError::Unavailable(_)
            | BackendError::Conflict(_)
            | BackendError::LockTimeout(_)
            | BackendError::AuditNotDurable(_) => Self {
                problem: Box::new(Problem::new(
                    ProblemType::ServiceUnavailable,
                    format!("{}; retry later", f.error),
                )),
                retry_after: Some(RETRY_AFTER_SECS),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(*self.problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            // RFC 9110 §15.5.16: say which media type would be accepted.
            headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        }
        response
    }
}
