//! Request and response bodies of the DataStorage REST API.
//!
//! Shared by the server (which produces them) and clients (which read them), so
//! both ends compile against one definition.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::StoredEvent;

/// Path of the batch ingest endpoint.
pub const BATCH_PATH: &str = "/api/v1/audit/events/batch";
/// Path of the single-event ingest and query endpoint.
pub const EVENTS_PATH: &str = "/api/v1/audit/events";
/// Path of the chain verification endpoint.
pub const VERIFY_CHAIN_PATH: &str = "/api/v1/audit/verify-chain";
/// Path of the readiness probe (served on the API port as well as the health port).
pub const READYZ_PATH: &str = "/readyz";

/// Answer to a successful batch (and single-event) ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchResponse {
    /// The id of every event of the request, in request order (server-assigned
    /// where the request had none).
    pub event_ids: Vec<Uuid>,
    /// How many events were stored by this request.
    pub created: usize,
    /// How many were already stored (same `event_id`) and were not stored again.
    pub duplicates: usize,
}

/// Answer of a successful batch ingest: [`BatchResponse`] (what the SDK reads)
/// plus the reference platform's `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchCreated {
    /// Ids and counts.
    #[serde(flatten)]
    pub batch: BatchResponse,
    /// What happened, for people (`3 event(s) stored, 0 already stored`).
    pub message: String,
}

/// Answer of a successful single-event ingest: the reference platform's
/// `AuditEventResponse` (`event_id`, `event_timestamp`, `message`, which its
/// client requires) plus the counts of [`BatchResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventCreated {
    /// The stored event's id (server-assigned when the request had none).
    pub event_id: Uuid,
    /// Its `event_timestamp`, as stored (UTC, microseconds).
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub event_timestamp: chrono::DateTime<chrono::Utc>,
    /// What happened, for people.
    pub message: String,
    /// Ids and counts (`created` 1, or `duplicates` 1 for an idempotent replay).
    #[serde(flatten)]
    pub batch: BatchResponse,
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPage {
    /// Events, newest first.
    pub data: Vec<StoredEvent>,
    /// Where this page sits.
    pub pagination: Pagination,
}

/// Pagination state of a query answer: the reference platform's `offset` and
/// `total` beside our keyset cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pagination {
    /// The page size used.
    pub limit: usize,
    /// Events skipped before this page (the `offset` parameter; 0 with a cursor).
    #[serde(default)]
    pub offset: usize,
    /// Events matching the filters, all pages together (ignoring `cursor`/`offset`).
    #[serde(default)]
    pub total: u64,
    /// Whether more events match after this page.
    pub has_more: bool,
    /// Opaque cursor for the next page (pass as `cursor`), absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Body of `POST /api/v1/audit/verify-chain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyChainRequest {
    /// The chain to verify.
    pub correlation_id: String,
}

/// Result of recomputing one correlation id's hash chain.
///
/// The fields the reference platform's client requires (`correlation_id`,
/// `is_valid`, `total_events`, `verified_events`, `verification_time`,
/// `message`) are always present; `tampered_events` carries our details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyChainResponse {
    /// The chain verified.
    pub correlation_id: String,
    /// True when every event's hash and link recompute to what is stored, and
    /// the rows agree with the chain head kept apart from them.
    pub is_valid: bool,
    /// Number of events found in the chain (0 for a correlation id never seen).
    pub total_events: usize,
    /// Number of those events that verified (no entry in `tampered_events`).
    pub verified_events: usize,
    /// When the verification ran.
    pub verification_time: chrono::DateTime<chrono::Utc>,
    /// One line saying what was found, for people.
    pub message: String,
    /// Every event whose stored hash, link or position does not check out.
    pub tampered_events: Vec<TamperedEvent>,
}

/// One event that failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TamperedEvent {
    /// The event.
    pub event_id: Uuid,
    /// Its position in the chain.
    pub chain_seq: i64,
    /// What verification computed (for a broken link: the previous event's hash).
    pub expected_hash: String,
    /// What is stored (for a broken link: the stored `previous_event_hash`).
    pub actual_hash: String,
    /// `content_modified`, `broken_link`, `sequence_gap`, `unknown_key` (the row
    /// names a key the server does not hold), or a disagreement with the chain
    /// head kept apart from the rows: `tail_truncated` (events from `chain_seq`
    /// on are gone; `event_id` is the nil UUID), `head_mismatch` or `not_in_head`.
    pub reason: String,
}

/// Path of the legal-hold endpoints (`/{correlation_id}` appended to release one).
pub const LEGAL_HOLD_PATH: &str = "/api/v1/audit/legal-hold";

/// Body of `POST /api/v1/audit/legal-hold`: hold every event of a correlation id,
/// including events stored later under it, until the hold is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LegalHoldRequest {
    /// The correlation id to hold.
    pub correlation_id: String,
    /// Why (a case number, a ticket); recorded with the hold.
    pub reason: String,
}

/// Body of `DELETE /api/v1/audit/legal-hold/{correlation_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LegalHoldReleaseRequest {
    /// Why the hold ends; logged with the release.
    pub release_reason: String,
}

/// An active legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LegalHold {
    /// The held correlation id.
    pub correlation_id: String,
    /// Why it is held.
    pub reason: String,
    /// Who placed the hold (the authenticated subject).
    pub placed_by: String,
    /// When the hold was placed.
    pub placed_at: chrono::DateTime<chrono::Utc>,
    /// Events of the correlation held when this answer was produced (the
    /// reference's name; earlier versions of this API said `events_held`).
    #[serde(alias = "events_held")]
    pub events_affected: u64,
}

/// Answer of `DELETE /api/v1/audit/legal-hold/{correlation_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LegalHoldReleased {
    /// The correlation id no longer held.
    pub correlation_id: String,
    /// Why the hold ended.
    pub release_reason: String,
    /// Who released it.
    pub released_by: String,
    /// When it was released.
    pub released_at: chrono::DateTime<chrono::Utc>,
    /// Events whose hold was lifted.
    pub events_released: u64,
}

/// Answer of `GET /api/v1/audit/legal-hold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LegalHoldList {
    /// Every active hold, oldest first.
    pub holds: Vec<LegalHold>,
    /// How many holds are active (`holds.len()`).
    pub total: usize,
}

/// What a legal-hold journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LegalHoldActionKind {
    /// A hold was placed (re-placing an active hold records nothing).
    Placed,
    /// A hold was released.
    Released,
}

/// One entry of a correlation id's legal-hold journal (append-only in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LegalHoldAction {
    /// Placement or release.
    pub action: LegalHoldActionKind,
    /// The placement reason, or the release reason.
    pub reason: String,
    /// Who acted (the authenticated subject).
    pub actor: String,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Events held by the placement, or released by the release.
    pub events: u64,
}

/// Answer of `GET /api/v1/audit/legal-hold/{correlation_id}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LegalHoldHistory {
    /// The correlation id.
    pub correlation_id: String,
    /// Every placement and release of a hold on it, oldest first (empty when it
    /// was never held).
    pub history: Vec<LegalHoldAction>,
}
