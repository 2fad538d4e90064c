//! JSON body extractors whose every failure is a problem document.
//!
//! axum's own `Json` answers some failures in plain text; an audit client must be
//! able to tell "too large" from "malformed" from "wrong media type" by `type`.
//!
//! [`JsonBody`] parses straight into a typed `T` (unknown fields are skipped
//! without being built). The ingest bodies are untrusted JSON trees
//! ([`BatchBody`], [`EventBody`]): they are measured first, refused by event
//! count before anything is built, and parsed only once their parsed size is
//! reserved from the [`MemoryBudget`](super::memory_budget::MemoryBudget).

use audit_sdk::problem::ProblemType;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;
use service_kit::json_body::{self, BodyError, MissingContentType};

use super::json_cost::{self, JsonCost};
use super::memory_budget::{MemoryBudget, Reservation};
use super::problem::ApiError;
use super::AppState;
use crate::domain::ingest::IngestError;

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// A batch body: its JSON text (measured, not parsed yet: it is read by
/// [`prepare_batch_json`](crate::domain::ingest::prepare_batch_json)), and
/// the memory reserved for parsing it as `Value`s, the most it can take
/// (keep it until the batch is stored).
#[derive(Debug)]
pub struct BatchBody(pub Bytes, pub Reservation);

/// A single-event body, as [`BatchBody`].
#[derive(Debug)]
pub struct EventBody(pub Value, pub Reservation);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(malformed)
    }
}

impl FromRequest<AppState> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let max = state.limits.max_batch_size;
        let bytes = json_bytes(req, state).await?;
        let cost = json_cost::measure(&bytes, max).map_err(malformed)?;
        if let Some(got) = cost.items.filter(|&got| got > max) {
            return Err(IngestError::TooLarge { max, got }.into());
        }
        let reservation = reserve(&state.memory, &cost, bytes.len()).await?;
        Ok(Self(bytes, reservation))
    }
}

impl FromRequest<AppState> for EventBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        let cost = json_cost::measure(&bytes, usize::MAX).map_err(malformed)?;
        let reservation = reserve(&state.memory, &cost, bytes.len()).await?;
        let value = serde_json::from_slice(&bytes).map_err(malformed)?;
        Ok(Self(value, reservation))
    }
}

async fn reserve(
    budget: &MemoryBudget,
    cost: &JsonCost,
    body_len: usize,
) -> Result<Reservation, ApiError> {
    budget.reserve(MemoryBudget::charge(cost, body_len)).await
}

fn malformed(e: serde_json::Error) -> ApiError {
    IngestError::Malformed(e.to_string()).into()
}

/// The body's bytes, once its media type is JSON and it fits `max_body_bytes`.
/// A missing `Content-Type` is refused: every client of the audit API (the
/// SDK, the reference's generated client) declares it.
async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    json_body::json_bytes(req, state, MissingContentType::Refuse)
        .await
        .map_err(|e| match e {
            BodyError::UnsupportedMediaType(got) => ApiError::new(
                ProblemType::UnsupportedMediaType,
                format!("expected Content-Type application/json, got {got}"),
            ),
            BodyError::TooLarge => ApiError::new(
                ProblemType::PayloadTooLarge,
                "request body exceeds the server's max_body_bytes",
            ),
            BodyError::Unreadable(why) => ApiError::new(ProblemType::MalformedJson, why),
        })
}
