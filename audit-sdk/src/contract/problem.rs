//! RFC 7807 problem documents: the one error format of every HTTP API here.
//!
//! The `type` of a problem is a stable URI built from a slug in [`ProblemType`],
//! so clients can branch on it without parsing human text.

use serde::{Deserialize, Serialize};

/// Media type of problem documents.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// Prefix of every problem `type` URI.
pub const TYPE_BASE: &str = "https://kubernaut.ai/problems/";

/// One problem with one field of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Position of the event in its batch (absent for single-event requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Field name, dotted for nested fields (`event_data.event_type`).
    pub field: String,
    /// What is wrong, phrased for the person who sent it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field` outside any batch.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            index: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same problem, located at `index` of a batch.
    pub fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "[{i}].{}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// The stable kinds of problem the APIs answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// The body is not valid JSON or not the expected shape.
    MalformedJson,
    /// One or more events break the contract; `errors` lists each problem.
    ValidationError,
    /// The batch has more events than the server's `max_batch_size`.
    BatchTooLarge,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// A query parameter is invalid.
    InvalidQuery,
    /// No such route or resource.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// No usable credentials: missing, malformed, unknown or expired bearer token.
    Unauthorized,
    /// Authenticated, but the caller lacks the verb this route needs.
    Forbidden,
    /// The service cannot serve now (database down, shutting down); retry later.
    ServiceUnavailable,
    /// An unexpected server fault.
    InternalError,
    /// A signal's `X-Timestamp` is outside the accepted window (replayed or skewed clock).
    StaleSignal,
    /// Processing did not finish within the server's request timeout.
    GatewayTimeout,
    /// An `event_id` is already stored with different content; `errors` names
    /// each conflicting event (nothing of the batch was stored).
    Conflict,
}

impl ProblemType {
    /// The stable slug (`validation-error`, …).
    pub fn slug(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed-json",
            Self::ValidationError => "validation-error",
            Self::BatchTooLarge => "batch-too-large",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::InvalidQuery => "invalid-query",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::ServiceUnavailable => "service-unavailable",
            Self::InternalError => "internal-error",
            Self::StaleSignal => "stale-signal",
            Self::GatewayTimeout => "gateway-timeout",
            Self::Conflict => "event-id-conflict",
        }
    }

    /// The HTTP status that goes with this problem.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedJson
            | Self::ValidationError
            | Self::BatchTooLarge
            | Self::InvalidQuery
            | Self::StaleSignal => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::InternalError => 500,
            Self::ServiceUnavailable => 503,
            Self::GatewayTimeout => 504,
        }
    }

    /// A short, constant human title.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedJson => "Malformed JSON body",
            Self::ValidationError => "Audit event validation failed",
            Self::BatchTooLarge => "Batch too large",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::InvalidQuery => "Invalid query parameter",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::ServiceUnavailable => "Service unavailable",
            Self::InternalError => "Internal server error",
            Self::StaleSignal => "Stale signal",
            Self::GatewayTimeout => "Gateway timeout",
            Self::Conflict => "Event id already used by another event",
        }
    }

    /// The full `type` URI.
    pub fn uri(self) -> String {
        format!("{TYPE_BASE}{}", self.slug())
    }
}

/// An RFC 7807 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// Stable URI identifying the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Every field-level problem, for validation failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem of `kind` with a specific `detail`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem_type: kind.uri(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: Some(detail.into()),
            instance: None,
            errors: Vec::new(),
        }
    }

    /// Attaches field-level errors.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Whether this problem is of `kind`.
    pub fn is(&self, kind: ProblemType) -> bool {
        self.problem_type == kind.uri()
    }
}
