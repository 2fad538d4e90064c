//! The audit event: what a service records ([`AuditEvent`]) and what the store
//! keeps ([`StoredEvent`]).
//!
//! Field names follow the reference platform's wire format so its services can
//! point at this store unchanged.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::limits;

/// How the audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EventOutcome {
    /// The action completed.
    Success,
    /// The action failed; `error_code` / `error_message` usually say why.
    Failure,
    /// The action started and its end will be recorded by a later event.
    Pending,
}

impl EventOutcome {
    /// The wire spelling (`success`, `failure`, `pending`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Pending => "pending",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            "pending" => Some(Self::Pending),
            _ => None,
        }
    }
}

fn default_version() -> String {
    limits::CONTRACT_VERSION.to_owned()
}

fn default_retention_days() -> u32 {
    limits::RETENTION_DAYS_MAX
}

/// One audit event as a service sends it.
///
/// `event_id` is optional on the wire (the server assigns a UUIDv7 when absent),
/// but the SDK always sets one so that retries are idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Contract version, always `"1.0"`.
    #[serde(default = "default_version")]
    pub version: String,
    /// Unique id; the key for idempotent ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// Dotted type such as `gateway.signal.received`.
    pub event_type: String,
    /// When the audited action happened (RFC 3339, UTC, microseconds).
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub event_timestamp: DateTime<Utc>,
    /// Coarse grouping, usually the emitting service (`gateway`).
    pub event_category: String,
    /// The verb (`received`, `created`, …).
    pub event_action: String,
    /// How the action ended.
    pub event_outcome: EventOutcome,
    /// Kind of actor (`service`, `user`, …).
    pub actor_type: String,
    /// Who acted.
    pub actor_id: String,
    /// The actor's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_ip: Option<String>,
    /// Kind of the resource acted upon.
    pub resource_type: String,
    /// Identity of the resource acted upon.
    pub resource_id: String,
    /// Groups the events of one flow; each correlation id has its own hash chain.
    pub correlation_id: String,
    /// The event this one follows from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_event_id: Option<Uuid>,
    /// Kubernetes namespace of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Cluster the event comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Free-form severity (`critical`, `warning`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Duration of the audited action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Machine-readable failure code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable failure description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// How long the event must be kept (1..=2555 days).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Whether `event_data` holds sensitive values.
    #[serde(default)]
    pub is_sensitive: bool,
    /// Type-specific payload (a JSON object, at most 256 KiB and 10 levels deep).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub event_data: Map<String, Value>,
}

impl AuditEvent {
    /// Starts an event of `event_type` in the flow `correlation_id` with the
    /// default retention. Its id (a fresh UUIDv7) and timestamp are stamped by
    /// [`AuditEventBuilder::build`], so each built event is a new event even
    /// when one builder is cloned or reused as a template.
    pub fn builder(
        event_type: impl Into<String>,
        correlation_id: impl Into<String>,
    ) -> AuditEventBuilder {
        AuditEventBuilder {
            timestamp: None,
            event: AuditEvent {
                version: default_version(),
                event_id: None,
                event_type: event_type.into(),
                event_timestamp: DateTime::<Utc>::UNIX_EPOCH,
                event_category: String::new(),
                event_action: String::new(),
                event_outcome: EventOutcome::Success,
                actor_type: String::new(),
                actor_id: String::new(),
                actor_ip: None,
                resource_type: String::new(),
                resource_id: String::new(),
                correlation_id: correlation_id.into(),
                parent_event_id: None,
                namespace: None,
                cluster_id: None,
                severity: None,
                duration_ms: None,
                error_code: None,
                error_message: None,
                retention_days: default_retention_days(),
                is_sensitive: false,
                event_data: Map::new(),
            },
        }
    }
}

/// Fluent construction of an [`AuditEvent`]; see [`AuditEvent::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct AuditEventBuilder {
    event: AuditEvent,
    /// Set by [`AuditEventBuilder::timestamp`]; otherwise `build()` stamps now.
    timestamp: Option<DateTime<Utc>>,
}

impl AuditEventBuilder {
    /// Sets `event_category`.
    pub fn category(mut self, v: impl Into<String>) -> Self {
        self.event.event_category = v.into();
        self
    }
    /// Sets `event_action`.
    pub fn action(mut self, v: impl Into<String>) -> Self {
        self.event.event_action = v.into();
        self
    }
    /// Sets `event_outcome`.
    pub fn outcome(mut self, v: EventOutcome) -> Self {
        self.event.event_outcome = v;
        self
    }
    /// Sets `actor_type` and `actor_id`.
    pub fn actor(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.event.actor_type = kind.into();
        self.event.actor_id = id.into();
        self
    }
    /// Sets `resource_type` and `resource_id`.
    pub fn resource(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.event.resource_type = kind.into();
        self.event.resource_id = id.into();
        self
    }
    /// Sets `namespace`.
    pub fn namespace(mut self, v: impl Into<String>) -> Self {
        self.event.namespace = Some(v.into());
        self
    }
    /// Sets `severity`.
    pub fn severity(mut self, v: impl Into<String>) -> Self {
        self.event.severity = Some(v.into());
        self
    }
    /// Sets `parent_event_id`.
    pub fn parent(mut self, v: Uuid) -> Self {
        self.event.parent_event_id = Some(v);
        self
    }
    /// Sets `duration_ms`.
    pub fn duration_ms(mut self, v: i64) -> Self {
        self.event.duration_ms = Some(v);
        self
    }
    /// Sets `error_code` and `error_message` (and does not change the outcome).
    pub fn error(mut self, code: impl Into<String>, message: impl Into<String>) -> Self {
        self.event.error_code = Some(code.into());
        self.event.error_message = Some(message.into());
        self
    }
    /// Adds one key to `event_data`.
    pub fn data(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.event.event_data.insert(key.into(), value.into());
        self
    }
    /// Replaces `event_data`.
    pub fn data_object(mut self, data: Map<String, Value>) -> Self {
        self.event.event_data = data;
        self
    }
    /// Overrides the timestamp (normalised to UTC microseconds).
    pub fn timestamp(mut self, ts: DateTime<Utc>) -> Self {
        self.timestamp = Some(crate::timestamp::normalize(ts));
        self
    }
    /// Finishes the event, stamping a fresh UUIDv7 and (unless
    /// [`timestamp`](Self::timestamp) was given) the current time. Call
    /// [`AuditEvent::validate`] to check it.
    pub fn build(self) -> AuditEvent {
        let mut event = self.event;
        event.event_id = Some(Uuid::now_v7());
        event.event_timestamp = self
            .timestamp
            .unwrap_or_else(|| crate::timestamp::normalize(Utc::now()));
        event
    }
}

/// An event as DataStorage keeps it: the recorded fields plus the store's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredEvent {
    /// The event as recorded (its `event_id` is always set once stored).
    #[serde(flatten)]
    pub event: AuditEvent,
    /// UTC date of `event_timestamp` (the partition key in PostgreSQL).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub event_date: NaiveDate,
    /// Position in the correlation id's hash chain, starting at 1, in insertion order.
    pub chain_seq: i64,
    /// `event_hash` of the previous event of the chain, empty for the first.
    pub previous_event_hash: String,
    /// Hex digest over `previous_event_hash` and the canonical JSON of the event.
    pub event_hash: String,
    /// `sha256` or `hmac-sha256`.
    pub hash_algorithm: String,
    /// Id of the HMAC key that hashed the event (verification uses that key);
    /// absent for `sha256` and for events stored before key ids were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key_id: Option<String>,
    /// Whether the event is under legal hold (never deleted while held).
    pub legal_hold: bool,
}

impl StoredEvent {
    /// The stored event's id.
    pub fn event_id(&self) -> Uuid {
        self.event.event_id.unwrap_or_default()
    }
}

#[cfg(test)]
mod builder_tests {
    use super::*;

    #[test]
    fn a_cloned_builder_builds_events_with_their_own_ids_and_times() {
        let template = AuditEvent::builder("gateway.signal.received", "rr-1")
            .category("gateway")
            .action("received")
            .actor("service", "gateway")
            .resource("Deployment", "ns/a");
        let first = template.clone().build();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = template.build();
        assert_ne!(first.event_id, second.event_id);
        assert!(first.event_id.is_some() && second.event_id.is_some());
        assert!(second.event_timestamp > first.event_timestamp);
    }

    #[test]
    fn an_explicit_timestamp_is_kept() {
        let ts = Utc::now() - chrono::Duration::minutes(5);
        let event = AuditEvent::builder("x.y", "c").timestamp(ts).build();
        assert_eq!(event.event_timestamp, crate::timestamp::normalize(ts));
    }
}
