//! RemediationRequests as custom resources, through the Kubernetes API (kube-rs).
//!
//! - Owners: a Pod's controller chain is followed through `ownerReferences`
//!   (Pod → ReplicaSet → Deployment), at most [`MAX_OWNER_DEPTH`] hops, so every
//!   Pod of a workload shares one fingerprint.
//! - Replicas: a per-fingerprint `coordination.k8s.io` Lease serialises the
//!   find-then-create decision across Gateway replicas; an abandoned Lease
//!   expires after `lease_duration`.
//! - Duplicates: `status.deduplication` is updated with the object's
//!   `resourceVersion` (optimistic concurrency) and retried on 409 Conflict.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch,
    PatchParams, PostParams, Preconditions,
};
use kube::{Api, Client};
use serde_json::json;

use super::crd::{
    DeduplicationStatus, RemediationRequest, RemediationRequestSpec, RemediationRequestStatus,
    TargetResource, FINGERPRINT_LABEL,
};
use super::{
    request_labels, ActiveRequest, BackendError, HeldLock, NewRequest, RemediationBackend,
};
use crate::config::KubernetesConfig;
use crate::domain::fingerprint::Fingerprint;
use crate::domain::signal::ResourceRef;

/// Most `ownerReferences` hops followed from a signal's target.
pub const MAX_OWNER_DEPTH: usize = 5;

/// Pause between attempts to take a Lease another replica holds.
const LEASE_RETRY: Duration = Duration::from_millis(50);

/// The Kubernetes backend.
#[derive(Clone)]
pub struct KubernetesBackend {
    client: Client,
    namespace: String,
    holder: String,
    lease_duration: Duration,
    conflict_retries: u32,
}

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("namespace", &self.namespace)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl KubernetesBackend {
    /// A backend creating RemediationRequests in `config.namespace`; `holder`
    /// identifies this replica in Leases (the Pod name).
    pub fn new(client: Client, config: &KubernetesConfig, holder: impl Into<String>) -> Self {
        Self {
            client,
            namespace: config.namespace.clone(),
            holder: holder.into(),
            lease_duration: config.lease_duration,
            conflict_retries: config.conflict_retries,
        }
    }

    fn requests(&self) -> Api<RemediationRequest> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn new_lease(&self, name: &str, resource_version: Option<String>) -> Lease {
        let now = MicroTime(Timestamp::now());
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(self.namespace.clone()),
                resource_version,
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.holder.clone()),
                lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                ..LeaseSpec::default()
            }),
        }
    }
}

/// The API resource of a kind the owner walk starts from, or of an owner's
/// `apiVersion` + `kind`.
fn api_resource(api_version: Option<&str>, kind: &str) -> Option<ApiResource> {
    let api_version = match api_version {
        Some(v) => v,
        None => match kind {
            "Pod" | "Service" | "PersistentVolumeClaim" => "v1",
            "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
            "Job" | "CronJob" => "batch/v1",
            _ => return None,
        },
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some(ApiResource::from_gvk(&GroupVersionKind::gvk(
        group, version, kind,
    )))
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Maps an API error: server-side and transport trouble is transient, a refusal is not.
fn classify(what: &str, e: kube::Error) -> BackendError {
    match &e {
        kube::Error::Api(s) if s.code >= 500 || s.code == 429 => {
            BackendError::Unavailable(format!("{what}: {e}"))
        }
        kube::Error::Api(_) => BackendError::Rejected(format!("{what}: {e}")),
        _ => BackendError::Unavailable(format!("{what}: {e}")),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A held Lease, deleted on release (only if it is still ours: uid precondition).
#[derive(Debug)]
struct LeaseGuard {
    api: Api<Lease>,
    name: String,
    uid: Option<String>,
}

#[async_trait]
impl HeldLock for LeaseGuard {
    async fn release(self: Box<Self>) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: self.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = self.api.delete(&self.name, &params).await {
            tracing::warn!(lease = %self.name, error = %e, "cannot release lease; it expires on its own");
        }
    }
}

#[async_trait]
impl RemediationBackend for KubernetesBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn resolve_target(&self, target: &ResourceRef) -> ResourceRef {
        let Some(namespace) = target.namespace.clone() else {
            return target.clone();
        };
        let mut current = target.clone();
        let mut api_version: Option<String> = None;
        for _ in 0..MAX_OWNER_DEPTH {
            let Some(resource) = api_resource(api_version.as_deref(), &current.kind) else {
                break;
            };
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &namespace, &resource);
            let object = match api.get_opt(&current.name).await {
                Ok(Some(object)) => object,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(target = %current, error = %e, "owner lookup failed; using the object itself");
                    break;
                }
            };
            let owner = object
                .metadata
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .find(|o| o.controller == Some(true));
            let Some(owner) = owner else { break };
            api_version = Some(owner.api_version);
            current = ResourceRef::new(Some(&namespace), owner.kind, owner.name);
        }
        current
    }

    async fn lock(&self, fingerprint: &Fingerprint) -> Result<Box<dyn HeldLock>, BackendError> {
        let api = self.leases();
        let name = format!("rr-lock-{}", fingerprint.prefix(40));
        let deadline = tokio::time::Instant::now() + self.lease_duration + LEASE_RETRY;
        loop {
            let taken = match api
                .create(&PostParams::default(), &self.new_lease(&name, None))
                .await
            {
                Ok(lease) => Some(lease),
                Err(e) if is_status(&e, 409) => {
                    // Held by someone; take it over only when it has expired.
                    match api
                        .get_opt(&name)
                        .await
                        .map_err(|e| classify("reading lease", e))?
                    {
                        Some(existing) if lease_expired(&existing) => {
                            let rv = existing.metadata.resource_version.clone();
                            match api
                                .replace(&name, &PostParams::default(), &self.new_lease(&name, rv))
                                .await
                            {
                                Ok(lease) => Some(lease),
                                Err(e) if is_status(&e, 409) => None,
                                Err(e) => return Err(classify("taking over lease", e)),
                            }
                        }
                        // Released between our create and get: try again.
                        None => None,
                        Some(_) => None,
                    }
                }
                Err(e) => return Err(classify("creating lease", e)),
            };
            if let Some(lease) = taken {
                return Ok(Box::new(LeaseGuard {
                    api,
                    name,
                    uid: lease.metadata.uid,
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::LockTimeout(fingerprint.to_string()));
            }
            tokio::time::sleep(LEASE_RETRY).await;
        }
    }

    async fn find_active(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<Option<ActiveRequest>, BackendError> {
        let selector = format!("{FINGERPRINT_LABEL}={}", fingerprint.prefix(63));
        let list = self
            .requests()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| classify("listing RemediationRequests", e))?;
        let mut active: Vec<RemediationRequest> = list
            .items
            .into_iter()
            .filter(|rr| rr.spec.signal_fingerprint == fingerprint.as_str() && rr.is_active())
            .collect();
        // Should there ever be two, the oldest keeps absorbing.
        active.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        });
        Ok(active.into_iter().next().map(|rr| ActiveRequest {
            occurrence_count: rr.occurrence_count(),
            name: rr.metadata.name.unwrap_or_default(),
        }))
    }

    async fn create(&self, request: &NewRequest) -> Result<(), BackendError> {
        let signal = &request.signal;
        let mut rr = RemediationRequest::new(
            &request.name,
            RemediationRequestSpec {
                signal_fingerprint: request.fingerprint.to_string(),
                signal_name: signal.name.clone(),
                severity: signal.severity.clone(),
                signal_source: signal.source.as_str().to_owned(),
                target_resource: TargetResource {
                    kind: request.target.kind.clone(),
                    name: request.target.name.clone(),
                    namespace: request.target.namespace.clone(),
                },
                signal_labels: signal.labels.clone(),
                signal_annotations: signal.annotations.clone(),
                firing_time: signal.firing_time.map(rfc3339),
                received_time: rfc3339(signal.received_time),
                original_payload: signal.payload.to_string(),
            },
        );
        rr.metadata.namespace = Some(self.namespace.clone());
        rr.metadata.labels = Some(request_labels(&request.fingerprint));
        let api = self.requests();
        api.create(&PostParams::default(), &rr)
            .await
            .map_err(|e| classify("creating RemediationRequest", e))?;
        // The status subresource ignores status in the create body; a merge
        // patch initialises it without needing the new resourceVersion.
        let seen = rfc3339(signal.received_time);
        let status = RemediationRequestStatus {
            overall_phase: None,
            deduplication: Some(DeduplicationStatus {
                first_seen_at: seen.clone(),
                last_seen_at: seen,
                occurrence_count: 1,
            }),
        };
        api.patch_status(
            &request.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(|e| classify("initialising RemediationRequest status", e))?;
        Ok(())
    }

    async fn record_occurrence(
        &self,
        active: &ActiveRequest,
        seen_at: DateTime<Utc>,
    ) -> Result<u64, BackendError> {
        let api = self.requests();
        let seen = rfc3339(seen_at);
        for attempt in 0..=self.conflict_retries {
            let mut rr = api
                .get(&active.name)
                .await
                .map_err(|e| classify("reading RemediationRequest", e))?;
            let mut status = rr.status.take().unwrap_or_default();
            let mut dedup = status.deduplication.take().unwrap_or(DeduplicationStatus {
                first_seen_at: rr.spec.received_time.clone(),
                last_seen_at: rr.spec.received_time.clone(),
                occurrence_count: 1,
            });
            dedup.occurrence_count += 1;
            dedup.last_seen_at = seen.clone();
            let count = dedup.occurrence_count as u64;
            status.deduplication = Some(dedup);
            rr.status = Some(status);
            // `rr` carries the resourceVersion it was read at: a concurrent
            // writer makes this a 409, and the count is recomputed from fresh data.
            match api
                .replace_status(&active.name, &PostParams::default(), &rr)
                .await
            {
                Ok(_) => return Ok(count),
                Err(e) if is_status(&e, 409) => {
                    tracing::debug!(rr = %active.name, attempt, "status update conflict; retrying");
                }
                Err(e) => return Err(classify("updating RemediationRequest status", e)),
            }
        }
        Err(BackendError::Conflict(active.name.clone()))
    }

    async fn check_ready(&self) -> Result<(), BackendError> {
        // Listing one RemediationRequest proves the API server answers and the
        // CRD is installed (404 otherwise), with the RBAC the Gateway has anyway.
        match self.requests().list(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Err(BackendError::Unavailable(
                "the RemediationRequest CRD (remediationrequests.kubernaut.ai) is not installed; \
                 apply deploy/crds/remediationrequest.yaml"
                    .to_owned(),
            )),
            Err(e) => Err(classify("listing RemediationRequests", e)),
        }
    }
}

fn lease_expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration_us = i64::from(spec.lease_duration_seconds.unwrap_or(0)) * 1_000_000;
    renewed.0.as_microsecond() + duration_us < Timestamp::now().as_microsecond()
}
