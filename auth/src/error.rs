//! Why a request was not allowed, and its RFC 7807 answer.

use audit_sdk::problem::{ProblemType, CONTENT_TYPE};
use audit_sdk::Problem;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::Verb;

/// An authentication or authorization failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing bearer token: send Authorization: Bearer <token>")]
    MissingToken,
    /// Not `Bearer <token>`.
    #[error("malformed Authorization header: expected Bearer <token>")]
    MalformedToken,
    /// The token is unknown, expired or not accepted by the TokenReview API.
    #[error("invalid or expired bearer token")]
    InvalidToken,
    /// Authenticated, but the verb is not granted.
    #[error("{subject} may not {verb} services/{resource} in namespace {namespace}; bind it to a role granting {verb} on that Service (ClusterRole {role})")]
    Forbidden {
        /// Who asked.
        subject: String,
        /// The verb needed.
        verb: Verb,
        /// The Service's name.
        resource: String,
        /// Its namespace.
        namespace: String,
        /// The ClusterRole that grants callers the verbs on that Service.
        role: &'static str,
    },
    /// The review API could not be asked; the request is refused, never allowed.
    #[error("authentication service unavailable: {0}")]
    Unavailable(String),
    /// The authentication configuration is unusable (startup only).
    #[error("auth configuration: {0}")]
    Config(String),
}

impl AuthError {
    fn problem(&self) -> Problem {
        let kind = match self {
            Self::MissingToken | Self::MalformedToken | Self::InvalidToken => {
                ProblemType::Unauthorized
            }
            Self::Forbidden { .. } => ProblemType::Forbidden,
            Self::Unavailable(_) => ProblemType::ServiceUnavailable,
            Self::Config(_) => ProblemType::InternalError,
        };
        let detail = match self {
            // Do not echo the review API's error text to callers.
            Self::Unavailable(_) => "cannot verify credentials right now; retry later".to_owned(),
            other => other.to_string(),
        };
        Problem::new(kind, detail)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        match self {
            Self::MissingToken | Self::MalformedToken | Self::InvalidToken => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}
