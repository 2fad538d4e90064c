//! The Gateway's audit trail: its event types, built in one place.
//!
//! Correlation id = RemediationRequest name, so one query by that name returns
//! the whole story of a request. Recording never blocks and never fails the
//! caller: an audit problem is logged and counted, and the HTTP answer stays
//! what the remediation outcome says (the SDK's spool covers DataStorage outages).
//!
//! Every payload is the reference platform's Gateway payload (discriminator
//! `event_type`, `signal_type`, `signal_name`, `namespace`, `fingerprint`,
//! `original_payload`, `error_details`, …) plus our own fields, so a reader of
//! the reference's v1 audit API decodes it. The signal's original payload is
//! left out (and `original_payload_omitted` says why) only when it would make
//! the event invalid (too large or too deep), so the event itself is never lost.
//!
//! With `audit.durable_ack` (default on when `audit.spool_dir` is set) the
//! signal handler awaits [`GatewayAudit::durable`] before answering: a 2xx then
//! implies the signal's audit events are fsynced in the spool, so a SIGKILL of
//! the Gateway right after the answer loses none of them. When the spool cannot
//! confirm them within `audit.durable_ack_timeout` (full spool, failing or
//! stalled disk) the answer is 503 with Retry-After instead: the sender
//! (Alertmanager) retries, and the retry is deduplicated.

use audit_sdk::payload::{DeduplicationStatus, ErrorDetails, GatewayEventData, SIGNAL_TYPE_ALERT};
use audit_sdk::{AuditEvent, AuditStore, EventOutcome};
use uuid::Uuid;

use crate::domain::fingerprint::Fingerprint;
use crate::domain::signal::{ResourceRef, Signal};
use crate::remediation::BackendError;
use crate::telemetry::names;

/// Event types, defined once for the code and the tests.
pub mod event_types {
    /// A signal that starts a new RemediationRequest.
    pub const SIGNAL_RECEIVED: &str = "gateway.signal.received";
    /// A signal absorbed by an active RemediationRequest.
    pub const SIGNAL_DEDUPLICATED: &str = "gateway.signal.deduplicated";
    /// A RemediationRequest was created.
    pub const CRD_CREATED: &str = "gateway.crd.created";
    /// A RemediationRequest could not be created.
    pub const CRD_FAILED: &str = "gateway.crd.failed";
    /// A resolved alert about the target of an active RemediationRequest.
    pub const SIGNAL_RESOLVED: &str = "gateway.signal.resolved";
}

/// Category of every Gateway event.
pub const CATEGORY: &str = "gateway";
/// Resource type of events about a RemediationRequest.
pub const RR_RESOURCE_TYPE: &str = "RemediationRequest";

/// What the audit events of one signal share.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The signal.
    pub signal: &'a Signal,
    /// The resolved target.
    pub target: &'a ResourceRef,
    /// Its fingerprint.
    pub fingerprint: &'a Fingerprint,
    /// The RemediationRequest name (the correlation id).
    pub request: &'a str,
    /// The namespace the RemediationRequest lives in.
    pub request_namespace: &'a str,
}

/// Records the Gateway's events through the SDK.
#[derive(Debug, Clone)]
pub struct GatewayAudit {
    store: AuditStore,
    durable_ack: bool,
    durable_ack_timeout: std::time::Duration,
}

impl GatewayAudit {
    /// Audits through `store`, with durable acknowledgement as its
    /// configuration says (`audit.durable_ack`, see
    /// [`audit_sdk::AuditConfig::durable_ack_enabled`]).
    pub fn new(store: AuditStore) -> Self {
        let durable_ack = store.config().durable_ack_enabled();
        let durable_ack_timeout = store.config().durable_ack_timeout;
        Self {
            store,
            durable_ack,
            durable_ack_timeout,
        }
    }

    /// With durable acknowledgement on, waits until every audit event recorded
    /// so far (this signal's included) is on disk; one fsync covers the events
    /// of all signals in flight (group commit), for at most
    /// `audit.durable_ack_timeout`. A failure (disk error, full spool, stalled
    /// disk, missed deadline) is logged, counted and returned: the caller
    /// answers 503 + Retry-After, never a 2xx without a durable audit trail.
    pub async fn durable(&self) -> Result<(), BackendError> {
        if !self.durable_ack {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.durable_ack_timeout;
        self.store.sync_within(deadline).await.map_err(|e| {
            metrics::counter!(names::AUDIT_FAILURES, "event_type" => "durable_ack").increment(1);
            tracing::error!(error = %e, "audit events of this signal are not confirmed durable; answering 503");
            BackendError::AuditNotDurable(e.to_string())
        })
    }

    /// The underlying store (readiness, close).
    pub fn store(&self) -> &AuditStore {
        &self.store
    }

    /// `gateway.signal.received`: a signal that starts a new request.
    pub fn received(&self, s: Subject<'_>) -> Option<Uuid> {
        let data = payload(event_types::SIGNAL_RECEIVED, s, DeduplicationStatus::New, 1);
        self.record(
            base(event_types::SIGNAL_RECEIVED, "received", s, data)
                .resource(s.target.kind.clone(), target_id(s.target)),
        )
    }

    /// `gateway.crd.created`, child of the `received` event.
    pub fn created(&self, s: Subject<'_>, parent: Option<Uuid>) -> Option<Uuid> {
        let data = payload(event_types::CRD_CREATED, s, DeduplicationStatus::New, 1);
        let mut b = base(event_types::CRD_CREATED, "created", s, data);
        if let Some(p) = parent {
            b = b.parent(p);
        }
        self.record(b)
    }

    /// `gateway.crd.failed` with the backend's error code; `retry_possible`
    /// says whether the sender's retry can succeed.
    pub fn failed(
        &self,
        s: Subject<'_>,
        parent: Option<Uuid>,
        code: &str,
        message: &str,
        retry_possible: bool,
    ) -> Option<Uuid> {
        let mut data = payload(event_types::CRD_FAILED, s, DeduplicationStatus::New, 0);
        data.error_code = Some(code.to_owned());
        data.error_details = Some(ErrorDetails {
            message: truncate(message, 1000),
            code: code.to_owned(),
            component: CATEGORY.to_owned(),
            retry_possible,
            stack_trace: None,
        });
        let mut b = base(event_types::CRD_FAILED, "create", s, data)
            .outcome(EventOutcome::Failure)
            .error(code, truncate(message, 1000));
        if let Some(p) = parent {
            b = b.parent(p);
        }
        self.record(b)
    }

    /// `gateway.signal.deduplicated` with the request's new occurrence count.
    pub fn deduplicated(&self, s: Subject<'_>, occurrence_count: u64) -> Option<Uuid> {
        let data = payload(
            event_types::SIGNAL_DEDUPLICATED,
            s,
            DeduplicationStatus::Duplicate,
            occurrence_count,
        );
        self.record(base(
            event_types::SIGNAL_DEDUPLICATED,
            "deduplicated",
            s,
            data,
        ))
    }

    /// `gateway.signal.resolved`: the alert behind an active request cleared.
    pub fn resolved(&self, s: Subject<'_>, occurrence_count: u64) -> Option<Uuid> {
        let data = payload(
            event_types::SIGNAL_RESOLVED,
            s,
            DeduplicationStatus::Duplicate,
            occurrence_count,
        );
        self.record(base(event_types::SIGNAL_RESOLVED, "resolved", s, data))
    }

    fn record(&self, builder: audit_sdk::AuditEventBuilder) -> Option<Uuid> {
        let event = without_unfit_original_payload(builder.build());
        let event_type = event.event_type.clone();
        match self.store.record(event) {
            Ok(id) => Some(id),
            Err(e) => {
                metrics::counter!(names::AUDIT_FAILURES, "event_type" => event_type.clone())
                    .increment(1);
                tracing::error!(%event_type, error = %e, "audit event not recorded; the signal's answer is unchanged");
                None
            }
        }
    }
}

fn target_id(target: &ResourceRef) -> String {
    match &target.namespace {
        Some(ns) => format!("{ns}/{}", target.name),
        None => target.name.clone(),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// When the signal's original payload makes the event invalid (an event_data
/// size or depth limit), the event goes without it, saying why: the audit
/// record matters more than a copy of the input.
fn without_unfit_original_payload(mut event: AuditEvent) -> AuditEvent {
    let Err(errors) = event.validate() else {
        return event;
    };
    let about_data: Vec<String> = errors
        .0
        .iter()
        .filter(|e| e.field.starts_with("event_data"))
        .map(|e| e.message.clone())
        .collect();
    if about_data.is_empty() || event.event_data.remove("original_payload").is_none() {
        return event;
    }
    tracing::warn!(event_type = %event.event_type, reason = %about_data.join("; "), "audit event recorded without the signal's original payload");
    event.event_data.insert(
        "original_payload_omitted".to_owned(),
        about_data.join("; ").into(),
    );
    event
}

fn payload(
    event_type: &str,
    s: Subject<'_>,
    status: DeduplicationStatus,
    occurrence_count: u64,
) -> GatewayEventData {
    GatewayEventData {
        event_type: Some(event_type.to_owned()),
        signal_type: Some(SIGNAL_TYPE_ALERT.to_owned()),
        original_payload: s.signal.payload.as_object().cloned(),
        signal_name: Some(s.signal.name.clone()),
        fingerprint: Some(s.fingerprint.to_string()),
        // The reference requires the field; cluster-scoped targets send "".
        namespace: Some(s.target.namespace.clone().unwrap_or_default()),
        severity: Some(s.signal.severity.clone()),
        resource_kind: Some(s.target.kind.clone()),
        resource_name: Some(s.target.name.clone()),
        remediation_request: Some(format!("{}/{}", s.request_namespace, s.request)),
        deduplication_status: Some(status),
        occurrence_count: (occurrence_count > 0).then_some(occurrence_count),
        signal_labels: Some(s.signal.labels.clone()),
        signal_annotations: Some(s.signal.annotations.clone()),
        signal_source: Some(s.signal.source.as_str().to_owned()),
        error_code: None,
        error_details: None,
    }
}

fn base(
    event_type: &str,
    action: &str,
    s: Subject<'_>,
    data: GatewayEventData,
) -> audit_sdk::AuditEventBuilder {
    let mut b = AuditEvent::builder(event_type, s.request)
        .category(CATEGORY)
        .action(action)
        .actor("service", audit_sdk::names::GATEWAY_SERVICE_ACCOUNT)
        .resource(RR_RESOURCE_TYPE, s.request)
        .severity(s.signal.severity.clone())
        .data_object(data.to_map());
    if let Some(ns) = &s.target.namespace {
        b = b.namespace(ns.clone());
    }
    b
}
