//! Where RemediationRequests live, behind one trait.
//!
//! A backend offers storage primitives (lock a fingerprint, find its active
//! request, create one, count an occurrence); the deduplication rule that
//! combines them lives once, in [`crate::domain::intake`]. Two backends:
//! [`kubernetes`] (the `RemediationRequest` custom resource, [`crd`]) and
//! [`memory`] (the same semantics in process, for running without a cluster).

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;

use crate::domain::fingerprint::Fingerprint;
use crate::domain::signal::{ResourceRef, Signal};

pub(crate) mod api_calls;
pub mod crd;
pub mod kubernetes;
pub mod memory;
mod stripes;
mod watch_cache;

/// An active (not terminal) RemediationRequest of a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRequest {
    /// Its name (`rr-<fp[:12]>-<rand8>`).
    pub name: String,
    /// Signals it has absorbed so far.
    pub occurrence_count: u64,
    /// The backend's concurrency token for it (the Kubernetes
    /// `resourceVersion` it was seen at), when the backend has one.
    pub version: Option<String>,
    /// Tokens of the latest signals counted on it, oldest first, when the
    /// backend keeps them (Kubernetes: so that a count whose answer was lost
    /// is recognised instead of applied twice).
    pub recent_signals: Vec<String>,
    /// When its first signal arrived (RFC 3339), when the backend keeps it
    /// apart from the count (Kubernetes: a request is created without a
    /// status, so its first duplicate writes this from `spec.receivedTime`).
    pub first_seen_at: Option<String>,
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The request was created (by this call, or by an earlier attempt of it
    /// whose answer was lost).
    New,
    /// Another replica created the active request of this fingerprint first:
    /// the signal is a duplicate of it.
    Existing(ActiveRequest),
}

/// Everything needed to create a RemediationRequest.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Name to create it under.
    pub name: String,
    /// Fingerprint of its (resolved) target.
    pub fingerprint: Fingerprint,
    /// The resolved target (the top owning workload when known).
    pub target: ResourceRef,
    /// The signal that caused it.
    pub signal: Signal,
}

/// Why a backend could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The backing store did not answer (API server down, timeout).
    #[error("remediation backend unavailable: {0}")]
    Unavailable(String),
    /// Optimistic concurrency kept failing (409) past the retry budget.
    #[error("update conflict persisted after retries: {0}")]
    Conflict(String),
    /// The fingerprint's lock could not be taken in time.
    #[error("timed out waiting for the lock of fingerprint {0}")]
    LockTimeout(String),
    /// The backing store refused the request (invalid object, forbidden, …).
    #[error("remediation backend refused the request: {0}")]
    Rejected(String),
    /// The signal's audit events could not be confirmed durable in time
    /// (`audit.durable_ack`): the answer must not be a 2xx.
    #[error("audit trail not confirmed durable: {0}")]
    AuditNotDurable(String),
}

impl BackendError {
    /// Stable code for audit events and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "backend_unavailable",
            Self::Conflict(_) => "update_conflict",
            Self::LockTimeout(_) => "lock_timeout",
            Self::Rejected(_) => "backend_rejected",
            Self::AuditNotDurable(_) => "audit_not_durable",
        }
    }

    /// Whether the sender's retry can succeed (every failure but a refusal).
    pub fn retry_possible(&self) -> bool {
        !matches!(self, Self::Rejected(_))
    }
}

/// A held per-fingerprint lock; released explicitly because releasing may need I/O.
#[async_trait]
pub trait HeldLock: Send + Debug {
    /// Releases the lock. Failures are logged, never returned: an unreleased
    /// lock expires on its own.
    async fn release(self: Box<Self>);
}

/// Storage primitives of RemediationRequests.
#[async_trait]
pub trait RemediationBackend: Send + Sync + Debug {
    /// Short name for logs (`memory`, `kubernetes`).
    fn name(&self) -> &'static str;

    /// The object a remediation should act on: the top controlling owner of
    /// `target` when the backend can see owners, else `target` itself.
    async fn resolve_target(&self, target: &ResourceRef) -> ResourceRef {
        target.clone()
    }

    /// Serialises the decisions about `fingerprint` made in this process.
    /// (Replicas are not serialised: backends shared by replicas make a racing
    /// create collide instead, see [`Created::Existing`].)
    async fn lock(&self, fingerprint: &Fingerprint) -> Result<Box<dyn HeldLock>, BackendError>;

    /// The active RemediationRequest of `fingerprint`, if any.
    async fn find_active(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<Option<ActiveRequest>, BackendError>;

    /// The name a new request for `fingerprint` gets; call it under the
    /// fingerprint's lock, after [`Self::find_active`] found none. Random by
    /// default ([`request_name`]); the Kubernetes backend derives it from the
    /// fingerprint's generation so that two replicas racing to create the
    /// same request collide on the name.
    async fn new_request_name(&self, fingerprint: &Fingerprint) -> Result<String, BackendError> {
        Ok(request_name(fingerprint))
    }

    /// Creates `request` with an occurrence count of 1, or reports the active
    /// request another replica created under the same name first.
    async fn create(&self, request: &NewRequest) -> Result<Created, BackendError>;

    /// Counts one more occurrence on `active`; returns the new count.
    async fn record_occurrence(
        &self,
        active: &ActiveRequest,
        seen_at: DateTime<Utc>,
    ) -> Result<u64, BackendError>;

    /// Whether the backend can serve (for `/readyz`).
    async fn check_ready(&self) -> Result<(), BackendError>;
}

/// A new RemediationRequest name: `rr-<fp[:12]>-<random 8>`, DNS-1123 safe.
pub fn request_name(fingerprint: &Fingerprint) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("rr-{}-{suffix}", fingerprint.prefix(12))
}

/// Labels a RemediationRequest carries, shared by both backends' views.
pub fn request_labels(fingerprint: &Fingerprint) -> BTreeMap<String, String> {
    BTreeMap::from([(
        crd::FINGERPRINT_LABEL.to_owned(),
        // Label values hold at most 63 characters; the spec keeps all 64.
        fingerprint.prefix(63).to_owned(),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_fingerprint_prefix_and_a_random_suffix() {
        let fp = Fingerprint::of(None, &ResourceRef::new(Some("p"), "Deployment", "api"));
        let a = request_name(&fp);
        let b = request_name(&fp);
        assert_ne!(a, b);
        assert_eq!(a.len(), "rr-".len() + 12 + 1 + 8);
        assert!(a.starts_with(&format!("rr-{}-", fp.prefix(12))));
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'));
    }
}
