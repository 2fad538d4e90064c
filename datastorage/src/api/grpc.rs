//! `audit.v1.AuditIngest/StoreBatch`: the batch endpoint over gRPC, on the API
//! port beside REST (HTTP/2 requests are routed here by path).
//!
//! Same semantics as `POST /api/v1/audit/events/batch`: each protobuf event is
//! turned into the JSON the REST route would have received and goes through the
//! same validation, idempotent insert and hash chain. Problems travel as the
//! same RFC 7807 documents, JSON-encoded in the status details.
//!
//! The same per-request caps apply: a batch over `max_batch_size` is refused
//! by count before any event is converted, and the memory its `event_data`
//! texts will take once parsed is measured and reserved from the ingest
//! [`MemoryBudget`] first (413 when it can never fit, 503 when the budget is
//! busy), as the REST body extractor does.

use audit_sdk::proto::{self, v1};
use axum::Router;
use chrono::Utc;
use prost::Message;
use tonic::{Code, Request, Response, Status};

use super::json_cost::{self, JsonCost};
use super::memory_budget::MemoryBudget;
use super::problem::ApiError;
use super::AppState;
use crate::domain::ingest::{attribute_actor, prepare_batch, IngestError};

/// The gRPC ingest service.
#[derive(Debug, Clone)]
pub struct IngestService {
    state: AppState,
}

#[tonic::async_trait]
impl v1::audit_ingest_server::AuditIngest for IngestService {
    async fn store_batch(
        &self,
        request: Request<v1::StoreBatchRequest>,
    ) -> Result<Response<v1::StoreBatchResponse>, Status> {
        let caller = request.extensions().get::<auth::Identity>().cloned();
        let max = self.state.limits.max_batch_size;
        let message_len = request.get_ref().encoded_len();
        let events = request.into_inner().events;
        if events.len() > max {
            let got = events.len();
            return Err(status(IngestError::TooLarge { max, got }.into()));
        }
        // Held until the batch is stored, as a REST body's reservation is.
        let _reservation = self
            .state
            .memory
            .reserve(MemoryBudget::charge(&cost(&events), message_len))
            .await
            .map_err(status)?;
        let values = events.into_iter().map(proto::to_json).collect();
        let mut events =
            prepare_batch(values, max, Utc::now()).map_err(|e| status(ApiError::from(e)))?;
        attribute_actor(&mut events, caller.as_ref());
        let answer = super::ingest::store(&self.state, events)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::StoreBatchResponse {
            event_ids: answer.event_ids.iter().map(ToString::to_string).collect(),
            created: answer.created as u64,
            duplicates: answer.duplicates as u64,
        }))
    }
}

/// What `events` will take once converted to JSON values: their `event_data`
/// texts measured without parsing them (one that is not JSON becomes a string
/// of its text, and validation refuses it).
fn cost(events: &[v1::AuditEvent]) -> JsonCost {
    let bytes = events
        .iter()
        .map(
            |e| match json_cost::measure(e.event_data_json.as_bytes(), usize::MAX) {
                Ok(cost) => cost.bytes,
                Err(_) => e.event_data_json.len() as u64,
            },
        )
        .sum();
    JsonCost {
        bytes,
        items: Some(events.len()),
    }
}

/// The service's routes, to merge into the API router.
pub fn routes(state: AppState) -> Router {
    let max = state.limits.max_body_bytes;
    let service = v1::audit_ingest_server::AuditIngestServer::new(IngestService { state })
        .max_decoding_message_size(max);
    tonic::service::Routes::new(service).into_axum_router()
}

/// The gRPC status for an API error; the problem document rides in the details.
fn status(error: ApiError) -> Status {
    let problem = error.problem();
    let code = match problem.status {
        400 | 413 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::AlreadyExists,
        503 => Code::Unavailable,
        _ => Code::Internal,
    };
    proto::status_from_problem(code, problem)
}
