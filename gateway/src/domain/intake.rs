//! The deduplication rule, once for every backend, with its audit trail.
//!
//! Under the fingerprint's lock: an active RemediationRequest for the
//! fingerprint absorbs the signal (occurrence count + 1,
//! `gateway.signal.deduplicated`); otherwise a new one is created
//! (`gateway.signal.received`, then `gateway.crd.created` or `gateway.crd.failed`).

use std::sync::Arc;

use crate::audit::{GatewayAudit, Subject};
use crate::domain::fingerprint::Fingerprint;
use crate::domain::signal::{ResourceRef, Signal};
use crate::remediation::{ActiveRequest, BackendError, Created, NewRequest, RemediationBackend};
use crate::telemetry::names;

/// What became of an accepted signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new RemediationRequest was created.
    Created {
        /// Its name.
        name: String,
        /// The fingerprint.
        fingerprint: Fingerprint,
    },
    /// An active RemediationRequest absorbed the signal.
    Duplicate {
        /// Its name.
        name: String,
        /// The fingerprint.
        fingerprint: Fingerprint,
        /// Signals it has absorbed, this one included.
        occurrence_count: u64,
    },
}

/// A signal that could not be turned into (or onto) a RemediationRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Failure {
    /// The fingerprint it was about.
    pub fingerprint: Fingerprint,
    /// The request name it would have had, when the failure was in creating it.
    pub request: Option<String>,
    /// What failed.
    pub error: BackendError,
}

/// Turns signals into RemediationRequests.
#[derive(Debug, Clone)]
pub struct Intake {
    backend: Arc<dyn RemediationBackend>,
    audit: GatewayAudit,
    cluster: Option<String>,
}

impl Intake {
    /// An intake over `backend`, auditing through `audit`; `cluster` prefixes fingerprints.
    pub fn new(
        backend: Arc<dyn RemediationBackend>,
        audit: GatewayAudit,
        cluster: Option<String>,
    ) -> Self {
        Self {
            backend,
            audit,
            cluster,
        }
    }

    /// The backend (for readiness).
    pub fn backend(&self) -> &Arc<dyn RemediationBackend> {
        &self.backend
    }

    /// The audit recorder.
    pub fn audit(&self) -> &GatewayAudit {
        &self.audit
    }

    /// Processes one accepted signal.
    pub async fn process(&self, signal: Signal) -> Result<Outcome, Failure> {
        let source = signal.source.as_str();
        metrics::counter!(names::SIGNALS_RECEIVED, "source" => source).increment(1);
        let target = self.backend.resolve_target(&signal.target).await;
        let fingerprint = Fingerprint::of(self.cluster.as_deref(), &target);
        let fail = |request: Option<String>, error: BackendError| {
            metrics::counter!(names::SIGNALS_FAILED, "source" => source, "reason" => error.code())
                .increment(1);
            Failure {
                fingerprint: fingerprint.clone(),
                request,
                error,
            }
        };
        let lock = self
            .backend
            .lock(&fingerprint)
            .await
            .map_err(|e| fail(None, e))?;
        let result = self.decide(&signal, &target, &fingerprint).await;
        lock.release().await;
        match result {
            Ok(outcome) => {
                let counter = match outcome {
                    Outcome::Created { .. } => names::REQUESTS_CREATED,
                    Outcome::Duplicate { .. } => names::SIGNALS_DEDUPLICATED,
                };
                metrics::counter!(counter, "source" => source).increment(1);
                Ok(outcome)
            }
            Err((request, error)) => Err(fail(request, error)),
        }
    }

    async fn decide(
        &self,
        signal: &Signal,
        target: &ResourceRef,
        fingerprint: &Fingerprint,
    ) -> Result<Outcome, (Option<String>, BackendError)> {
        if let Some(active) = self
            .backend
            .find_active(fingerprint)
            .await
            .map_err(|e| (None, e))?
        {
            return self.absorb(signal, target, fingerprint, active).await;
        }
        let name = self
            .backend
            .new_request_name(fingerprint)
            .await
            .map_err(|e| (None, e))?;
        let subject = Subject {
            signal,
            target,
            fingerprint,
            request: &name,
        };
        let received = self.audit.received(subject);
        let request = NewRequest {
            name: name.clone(),
            fingerprint: fingerprint.clone(),
            target: target.clone(),
            signal: signal.clone(),
        };
        match self.backend.create(&request).await {
            // Another replica created it first: this signal is its duplicate.
            Ok(Created::Existing(active)) => self.absorb(signal, target, fingerprint, active).await,
            Ok(Created::New) => {
                self.audit.created(subject, received);
                Ok(Outcome::Created {
                    name,
                    fingerprint: fingerprint.clone(),
                })
            }
            Err(e) => {
                tracing::warn!(rr = %name, %fingerprint, error = %e, "RemediationRequest not created");
                self.audit
                    .failed(subject, received, e.code(), &e.to_string());
                Err((Some(name), e))
            }
        }
    }

    /// Counts `signal` on `active`.
    async fn absorb(
        &self,
        signal: &Signal,
        target: &ResourceRef,
        fingerprint: &Fingerprint,
        active: ActiveRequest,
    ) -> Result<Outcome, (Option<String>, BackendError)> {
        let count = self
            .backend
            .record_occurrence(&active, signal.received_time)
            .await
            .map_err(|e| (Some(active.name.clone()), e))?;
        self.audit.deduplicated(
            Subject {
                signal,
                target,
                fingerprint,
                request: &active.name,
            },
            count,
        );
        Ok(Outcome::Duplicate {
            name: active.name,
            fingerprint: fingerprint.clone(),
            occurrence_count: count,
        })
    }
}
