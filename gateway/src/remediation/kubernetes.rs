//! RemediationRequests as custom resources, through the Kubernetes API (kube-rs).
//!
//! - Owners: a Pod's controller chain is followed through `ownerReferences`
//!   (Pod → ReplicaSet → Deployment, Job → CronJob), at most
//!   [`MAX_OWNER_DEPTH`] hops, so every Pod of a workload shares one fingerprint.
//!   Each hop's answer (its controlling owner, or none) is kept for
//!   [`OWNER_TTL`] in a bounded cache ([`OWNER_CAPACITY`] objects, `moka`).
//!   **A cold cache costs one GET per hop on first sight of an object**: 3
//!   for a Pod of a Deployment (Pod, ReplicaSet, Deployment — the last to see
//!   it has no controller) or of a CronJob's Job, 1 for a signal naming the
//!   workload itself, at most [`MAX_OWNER_DEPTH`]; then nothing until the
//!   entry expires (≤ 3 GETs per workload per minute for a workload that keeps
//!   alerting). That is accepted because an alert storm is many signals about
//!   few workloads (the duplicates within the TTL read nothing), because a
//!   GET by name is the API server's cheapest call, and because the
//!   alternative — watching every Pod, ReplicaSet and Job of the cluster to
//!   keep owners warm — would need cluster-wide `list`/`watch` RBAC (against
//!   least privilege) and memory for every Pod, for signals that name a tiny
//!   fraction of them. A failed lookup is not cached: the signal falls back to
//!   the object itself and the next signal asks again.
//! - Replicas: **no lock object.** The request a new signal creates is named
//!   after its fingerprint and *generation* (1 + the highest generation of the
//!   fingerprint's requests, kept in the [`GENERATION_LABEL`]), so two replicas
//!   deciding at once create the same name and the API server lets exactly one
//!   win: the other gets 409 AlreadyExists and counts its signal on the
//!   winner's request ([`Created::Existing`]). A per-fingerprint Lease
//!   (the previous design) cannot give that: a holder slower than the lease
//!   loses it without knowing, so fencing needs the create's own atomicity
//!   anyway, and it cost two extra writes per signal and a polling loop per
//!   waiting signal. A stalled replica here only delays its own answer.
//! - New signals: one write, the create. The request has no status until its
//!   first duplicate (one occurrence, first seen at `spec.receivedTime`), as
//!   in the reference Gateway; initialising it would double the writes on
//!   the path every new alert waits for.
//! - Duplicates: only `status.deduplication` is written, by a JSON merge patch
//!   on the status subresource carrying the `resourceVersion` the count was
//!   read at; on 409 Conflict the request is read again, checked to be still
//!   active, and the patch retried. A patch left unanswered (timeout,
//!   connection lost) may have been applied: each count carries a token kept
//!   in `status.deduplication.recentSignals`, so the fresh read tells whether
//!   it was, and it is retried (safe: resourceVersion-guarded) only if not.
//!   Other controllers' status fields are never touched.
//! - Every call has a deadline and a bounded retry budget ([`super::api_calls`]).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client};
use serde_json::json;
use sha2::{Digest, Sha256};

pub use super::api_calls::client_config;
use super::api_calls::{CallPolicy, Retry};
use super::crd::{
    RemediationRequest, RemediationRequestSpec, TargetResource, CREATED_BY_ANNOTATION,
    FINGERPRINT_LABEL, GENERATION_LABEL, RECENT_SIGNALS,
};
use super::stripes::Stripes;
use super::watch_cache::{Summary, WatchCache};
use super::{
    request_labels, ActiveRequest, BackendError, Created, HeldLock, NewRequest, RemediationBackend,
};
use crate::config::KubernetesConfig;
use crate::domain::fingerprint::Fingerprint;
use crate::domain::signal::ResourceRef;

const POST: PostParams = PostParams {
    dry_run: false,
    field_manager: None,
};

/// Field manager of every write (shown in `managedFields`).
pub const FIELD_MANAGER: &str = "kubernaut-gateway";

/// Most `ownerReferences` hops followed from a signal's target.
pub const MAX_OWNER_DEPTH: usize = 5;

/// The Kubernetes backend.
pub struct KubernetesBackend {
    client: Client,
    namespace: String,
    holder: String,
    conflict_retries: u32,
    calls: CallPolicy,
    stripes: Stripes,
    /// Next generation per fingerprint, as the last lookup under its lock saw it.
    next_generation: Mutex<HashMap<Fingerprint, u64>>,
    /// The fingerprints' requests, from a watch.
    cache: WatchCache,
    /// (apiVersion, kind, namespace, name) → its controlling owner
    /// (apiVersion, kind, name), if any; owners rarely change.
    owners: moka::future::Cache<OwnerKey, Option<(String, String, String)>>,
}

type OwnerKey = (String, String, String, String);

/// How long an owner lookup is reused (bounds how long a deleted and
/// re-created object of the same name keeps its old owner).
pub const OWNER_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most owner lookups kept.
pub const OWNER_CAPACITY: u64 = 10_000;

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("namespace", &self.namespace)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// The name of generation `generation` of `fingerprint`'s requests:
/// `rr-<fp[:12]>-<8 hex of SHA-256(fp:generation)>`.
pub fn generation_name(fingerprint: &Fingerprint, generation: u64) -> String {
    let digest = Sha256::digest(format!("{fingerprint}:{generation}").as_bytes());
    format!(
        "rr-{}-{}",
        fingerprint.prefix(12),
        &hex::encode(digest)[..8]
    )
}

fn active_of(rr: &RemediationRequest) -> ActiveRequest {
    summary_active(&Summary::of(rr))
}

fn summary_active(s: &Summary) -> ActiveRequest {
    ActiveRequest {
        name: s.name.clone(),
        occurrence_count: s.occurrence_count,
        version: s.resource_version.clone(),
        recent_signals: s.recent_signals.clone(),
        first_seen_at: Some(s.first_seen_at.clone()),
    }
}

impl KubernetesBackend {
    /// A backend creating RemediationRequests in `config.namespace`; `holder`
    /// identifies this replica (the Pod name) in the requests it creates.
    /// Build `client` from [`client_config`].
    pub fn new(client: Client, config: &KubernetesConfig, holder: impl Into<String>) -> Self {
        Self {
            namespace: config.namespace.clone(),
            holder: holder.into(),
            conflict_retries: config.conflict_retries,
            calls: CallPolicy::new(config),
            stripes: Stripes::default(),
            next_generation: Mutex::default(),
            cache: WatchCache::start(Api::namespaced(client.clone(), &config.namespace)),
            owners: moka::future::Cache::builder()
                .max_capacity(OWNER_CAPACITY)
                .time_to_live(OWNER_TTL)
                .build(),
            client,
        }
    }

    fn requests(&self) -> Api<RemediationRequest> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Every request of `fingerprint`: the active one (the oldest, should
    /// there ever be two) and the next generation. From the watch cache once
    /// it is synced; a LIST before that.
    async fn lookup(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<(Option<ActiveRequest>, u64), BackendError> {
        let mine = match self.cache.requests_of(fingerprint.as_str()) {
            Some(cached) => cached,
            None => {
                let selector = format!("{FINGERPRINT_LABEL}={}", fingerprint.prefix(63));
                let api = self.requests();
                let params = ListParams::default().labels(&selector);
                let list = self
                    .calls
                    .run(Retry::Always, || api.list(&params))
                    .await
                    .map_err(|e| e.into_backend("listing RemediationRequests"))?;
                list.items
                    .iter()
                    .filter(|rr| rr.spec.signal_fingerprint == fingerprint.as_str())
                    .map(Summary::of)
                    .collect()
            }
        };
        let next = mine.iter().map(|s| s.generation).max().unwrap_or(0) + 1;
        let mut active: Vec<&Summary> = mine.iter().filter(|s| s.active).collect();
        active.sort_by(|a, b| a.created.cmp(&b.created));
        Ok((active.first().map(|s| summary_active(s)), next))
    }

    /// Whether the watch cache has its first full list (until then every
    /// lookup is a LIST).
    pub fn is_synced(&self) -> bool {
        self.cache.is_synced()
    }

    /// Resolves once the watch cache has its first full list (from then on
    /// lookups need no API call).
    pub async fn synced(&self) {
        self.cache.synced().await
    }

    /// Reads `name` fresh.
    async fn read(&self, name: &str) -> Result<Option<RemediationRequest>, BackendError> {
        let api = self.requests();
        let rr = self
            .calls
            .run(Retry::Always, || api.get_opt(name))
            .await
            .map_err(|e| e.into_backend("reading RemediationRequest"))?;
        if let Some(rr) = &rr {
            self.cache.observe(rr);
        }
        Ok(rr)
    }

    fn creation_token(&self, request: &NewRequest) -> String {
        // Same for every attempt of this create, distinct between signals.
        format!(
            "{}/{}",
            self.holder,
            request
                .signal
                .received_time
                .timestamp_nanos_opt()
                .unwrap_or(0)
        )
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

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
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
            let key = (
                resource.api_version.clone(),
                current.kind.clone(),
                namespace.clone(),
                current.name.clone(),
            );
            let lookup = self.owners.try_get_with(key, async {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &namespace, &resource);
                let object = self
                    .calls
                    .run(Retry::Always, || api.get_opt(&current.name))
                    .await?;
                Ok::<_, super::api_calls::CallError>(object.and_then(|o| {
                    o.metadata
                        .owner_references
                        .unwrap_or_default()
                        .into_iter()
                        .find(|r| r.controller == Some(true))
                        .map(|r| (r.api_version, r.kind, r.name))
                }))
            });
            let owner = match lookup.await {
                Ok(owner) => owner,
                Err(e) => {
                    tracing::warn!(target = %current, error = ?e, "owner lookup failed; using the object itself");
                    break;
                }
            };
            let Some((owner_api_version, kind, name)) = owner else {
                break;
            };
            api_version = Some(owner_api_version);
            current = ResourceRef::new(Some(&namespace), kind, name);
        }
        current
    }

    async fn lock(&self, fingerprint: &Fingerprint) -> Result<Box<dyn HeldLock>, BackendError> {
        // In-process only: this replica does not race itself. Replicas race
        // on the create's name (see the module documentation).
        Ok(self.stripes.lock(fingerprint).await)
    }

    async fn find_active(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<Option<ActiveRequest>, BackendError> {
        let (active, next) = self.lookup(fingerprint).await?;
        let mut memo = self
            .next_generation
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if active.is_none() {
            memo.insert(fingerprint.clone(), next);
        } else {
            memo.remove(fingerprint);
        }
        Ok(active)
    }

    async fn new_request_name(&self, fingerprint: &Fingerprint) -> Result<String, BackendError> {
        let memo = self
            .next_generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(fingerprint)
            .copied();
        let generation = match memo {
            Some(g) => g,
            None => self.lookup(fingerprint).await?.1,
        };
        Ok(generation_name(fingerprint, generation))
    }

    async fn create(&self, request: &NewRequest) -> Result<Created, BackendError> {
        let signal = &request.signal;
        let generation = self
            .next_generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&request.fingerprint)
            .unwrap_or(0);
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
        let token = self.creation_token(request);
        let mut labels = request_labels(&request.fingerprint);
        labels.insert(GENERATION_LABEL.to_owned(), generation.to_string());
        rr.metadata.namespace = Some(self.namespace.clone());
        rr.metadata.labels = Some(labels);
        rr.metadata.annotations = Some([(CREATED_BY_ANNOTATION.to_owned(), token.clone())].into());
        let api = self.requests();
        match self
            .calls
            .run(Retry::Always, || api.create(&POST, &rr))
            .await
        {
            Ok(created) => self.cache.observe(&created),
            Err(e) if e.is(409) => {
                // The name is taken: by an earlier attempt of this very create
                // whose answer was lost (then it is ours), or by another replica.
                let Some(existing) = self.read(&request.name).await? else {
                    return Err(BackendError::Conflict(format!(
                        "{} existed and vanished while being created",
                        request.name
                    )));
                };
                let ours = existing
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CREATED_BY_ANNOTATION))
                    == Some(&token);
                // Ours: created by the attempt whose answer was lost.
                if !ours {
                    if existing.spec.signal_fingerprint == request.fingerprint.as_str()
                        && existing.is_active()
                    {
                        return Ok(Created::Existing(active_of(&existing)));
                    }
                    // Stale view (that generation already ended): the next
                    // delivery of the signal looks again.
                    return Err(BackendError::Conflict(format!(
                        "{} already exists and is no longer active",
                        request.name
                    )));
                }
            }
            Err(e) => return Err(e.into_backend("creating RemediationRequest")),
        }
        // No status write: the request counts as one occurrence until its
        // first duplicate writes `status.deduplication` (with `firstSeenAt`
        // from `spec.receivedTime`), as the reference Gateway does. A status
        // initialisation would be a second sequential write on every new
        // signal, for a value the absent status already means.
        Ok(Created::New)
    }

    async fn record_occurrence(
        &self,
        active: &ActiveRequest,
        seen_at: DateTime<Utc>,
    ) -> Result<u64, BackendError> {
        let api = self.requests();
        let seen = rfc3339(seen_at);
        let patch_params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        // Same for every attempt of this count, distinct between signals
        // (one webhook's alerts share a received time).
        let token = format!("{}/{:016x}", self.holder, rand::random::<u64>());
        let mut current = active.clone();
        for attempt in 0..=self.conflict_retries {
            let count = current.occurrence_count + 1;
            let mut recent = current.recent_signals.clone();
            recent.push(token.clone());
            let excess = recent.len().saturating_sub(RECENT_SIGNALS);
            recent.drain(..excess);
            let mut dedup = json!({"lastSeenAt": seen, "occurrenceCount": count,
                "recentSignals": recent});
            if current.occurrence_count <= 1 {
                // The first duplicate: no `status.deduplication` yet.
                dedup["firstSeenAt"] = json!(current.first_seen_at.as_deref().unwrap_or(&seen));
            }
            let patch = Patch::Merge(json!({
                "metadata": {"resourceVersion": current.version},
                "status": {"deduplication": dedup}
            }));
            let answer = self
                .calls
                .run(Retry::IfNotApplied, || {
                    api.patch_status(&current.name, &patch_params, &patch)
                })
                .await;
            match answer {
                Ok(updated) => {
                    self.cache.observe(&updated);
                    return Ok(count);
                }
                Err(e) if e.is(409) => {
                    tracing::debug!(rr = %current.name, attempt, "status update conflict; reading it again");
                }
                Err(e) if e.is(404) => {
                    return Err(BackendError::Conflict(format!(
                        "{} was deleted while counting; the next delivery creates a new request",
                        current.name
                    )))
                }
                Err(e) if e.is_ambiguous() => {
                    // The patch may have been applied: the fresh object says
                    // (its token is in `recentSignals`), and the
                    // resourceVersion guard makes a retry of an unapplied
                    // patch safe. Within the same conflict budget.
                    tracing::debug!(rr = %current.name, attempt, error = ?e, "status update unanswered; reading it to see whether it applied");
                }
                Err(e) => return Err(e.into_backend("updating RemediationRequest status")),
            }
            match self.read(&current.name).await? {
                Some(rr) if rr.recent_signals().contains(&token) => {
                    // Counted by the attempt whose answer was lost.
                    return Ok(count);
                }
                Some(rr) if rr.is_active() => current = active_of(&rr),
                _ => {
                    return Err(BackendError::Conflict(format!(
                        "{} ended while counting; the next delivery creates a new request",
                        current.name
                    )))
                }
            }
        }
        Err(BackendError::Conflict(active.name.clone()))
    }

    async fn check_ready(&self) -> Result<(), BackendError> {
        // Listing one RemediationRequest proves the API server answers and the
        // CRD is installed (404 otherwise), with the RBAC the Gateway has anyway.
        let api = self.requests();
        let params = ListParams::default().limit(1);
        match self.calls.run(Retry::Always, || api.list(&params)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(404) => Err(BackendError::Unavailable(
                "the RemediationRequest CRD (remediationrequests.kubernaut.ai) is not installed; \
                 apply deploy/crds/remediationrequest.yaml"
                    .to_owned(),
            )),
            Err(e) => Err(e.into_backend("listing RemediationRequests")),
        }
    }
}
