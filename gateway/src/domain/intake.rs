//! The deduplication rule, once for every backend, with its audit trail.
//!
//! Under the fingerprint's lock: an active RemediationRequest for the
//! fingerprint absorbs the signal (occurrence count + 1,
//! `gateway.signal.deduplicated`); otherwise a new one is created
//! (`gateway.signal.received`, then `gateway.crd.created` or `gateway.crd.failed`).
//!
//! A resolved alert never creates anything: it is recorded
//! (`gateway.signal.resolved`) on the active request of its fingerprint, or
//! ignored when there is none.

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
    /// A resolved alert about the target of an active RemediationRequest.
    Resolved {
        /// The active request, on whose correlation the resolution is recorded.
        name: String,
        /// The fingerprint.
        fingerprint: Fingerprint,
    },
    /// A resolved alert with no active RemediationRequest: nothing to do.
    Ignored {
        /// The fingerprint (`None` when the alert named no target).
        fingerprint: Option<Fingerprint>,
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

/// The RemediationRequest an outcome names, for a failure reported after it.
fn outcome_request(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Created { name, .. }
        | Outcome::Duplicate { name, .. }
        | Outcome::Resolved { name, .. } => Some(name.clone()),
        Outcome::Ignored { .. } => None,
    }
}

/// Turns signals into RemediationRequests.
#[derive(Debug, Clone)]
pub struct Intake {
    backend: Arc<dyn RemediationBackend>,
    audit: GatewayAudit,
    cluster: Option<String>,
    cluster_label: Option<String>,
    request_namespace: String,
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
            cluster_label: None,
            request_namespace: audit_sdk::names::NAMESPACE.to_owned(),
        }
    }

    /// The namespace RemediationRequests are created in (answers and audit
    /// payloads name it); `kubernaut-system` unless configured.
    pub fn with_request_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.request_namespace = namespace.into();
        self
    }

    /// The namespace RemediationRequests are created in.
    pub fn request_namespace(&self) -> &str {
        &self.request_namespace
    }

    /// Reads the cluster from the signal's `label` when it carries one, so
    /// alerts of a fleet Prometheus about two clusters never join one request;
    /// the configured cluster stays the fallback.
    pub fn with_cluster_label(mut self, label: impl Into<String>) -> Self {
        self.cluster_label = Some(label.into());
        self
    }

    /// The fingerprint of `target` for `signal`'s cluster.
    fn fingerprint(&self, signal: &Signal, target: &ResourceRef) -> Fingerprint {
        let from_label = self
            .cluster_label
            .as_ref()
            .and_then(|l| signal.labels.get(l))
            .map(String::as_str)
            .filter(|c| !c.trim().is_empty());
        Fingerprint::of(from_label.or(self.cluster.as_deref()), target)
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
        let fingerprint = self.fingerprint(&signal, &target);
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
        // audit.durable_ack: a 2xx implies a durable audit trail; else 503.
        let result = match (result, self.audit.durable().await) {
            (Ok(outcome), Err(error)) => Err((outcome_request(&outcome), error)),
            (result, _) => result,
        };
        match result {
            Ok(outcome) => {
                let counter = match outcome {
                    Outcome::Created { .. } => names::REQUESTS_CREATED,
                    Outcome::Duplicate { .. } => names::SIGNALS_DEDUPLICATED,
                    Outcome::Resolved { .. } => names::SIGNALS_RESOLVED,
                    Outcome::Ignored { .. } => names::SIGNALS_IGNORED,
                };
                metrics::counter!(counter, "source" => source).increment(1);
                Ok(outcome)
            }
            Err((request, error)) => Err(fail(request, error)),
        }
    }

    /// Processes a resolved alert: recorded on the active request of its
    /// fingerprint, else ignored. No lock: nothing is created or counted, and a
    /// request created concurrently only misses one informational event.
    pub async fn resolve(&self, signal: Signal) -> Result<Outcome, Failure> {
        let source = signal.source.as_str();
        let target = self.backend.resolve_target(&signal.target).await;
        let fingerprint = self.fingerprint(&signal, &target);
        let active = match self.backend.find_active(&fingerprint).await {
            Ok(active) => active,
            Err(error) => {
                metrics::counter!(names::SIGNALS_FAILED, "source" => source, "reason" => error.code())
                    .increment(1);
                return Err(Failure {
                    fingerprint,
                    request: None,
                    error,
                });
            }
        };
        let answered_fingerprint = fingerprint.clone();
        let outcome = match active {
            Some(active) => {
                self.audit.resolved(
                    Subject {
                        signal: &signal,
                        target: &target,
                        fingerprint: &fingerprint,
                        request: &active.name,
                        request_namespace: &self.request_namespace,
                    },
                    active.occurrence_count,
                );
                metrics::counter!(names::SIGNALS_RESOLVED, "source" => source).increment(1);
                Outcome::Resolved {
                    name: active.name,
                    fingerprint,
                }
            }
            None => {
                metrics::counter!(names::SIGNALS_IGNORED, "source" => source).increment(1);
                Outcome::Ignored {
                    fingerprint: Some(fingerprint),
                }
            }
        };
        // A resolution answered 2xx is on disk too.
        if let Err(error) = self.audit.durable().await {
            metrics::counter!(names::SIGNALS_FAILED, "source" => source, "reason" => error.code())
                .increment(1);
            return Err(Failure {
                fingerprint: answered_fingerprint,
                request: outcome_request(&outcome),
                error,
            });
        }
        Ok(outcome)
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
            request_namespace: &self.request_namespace,
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
                self.audit.failed(
                    subject,
                    received,
                    e.code(),
                    &e.to_string(),
                    e.retry_possible(),
                );
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
                request_namespace: &self.request_namespace,
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
