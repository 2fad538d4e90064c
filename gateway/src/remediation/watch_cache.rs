//! "The requests of this fingerprint", served from a kube-rs watch instead of
//! a LIST per signal.
//!
//! A `kube::runtime::watcher` keeps an index fingerprint → its requests (name,
//! generation, active, count, resourceVersion; not their payloads), relisting
//! on 410 Gone as the watcher does. The backend also folds in the answers of
//! its own writes, so the next signal does not wait for the watch event; an
//! entry is only replaced by a newer resourceVersion. A stale entry is safe:
//! every write is guarded (create by name, status by resourceVersion), and a
//! refused write reads the object fresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use super::crd::{RemediationRequest, GENERATION_LABEL};

/// What the backend needs to know of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub name: String,
    pub generation: u64,
    pub active: bool,
    pub occurrence_count: u64,
    pub recent_signals: Vec<String>,
    pub first_seen_at: String,
    pub resource_version: Option<String>,
    pub created: Option<String>,
}

impl Summary {
    pub(crate) fn of(rr: &RemediationRequest) -> Self {
        Self {
            name: rr.metadata.name.clone().unwrap_or_default(),
            generation: rr
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(GENERATION_LABEL))
                .and_then(|g| g.parse().ok())
                .unwrap_or(0),
            active: rr.is_active(),
            occurrence_count: rr.occurrence_count(),
            recent_signals: rr.recent_signals(),
            first_seen_at: rr.first_seen_at(),
            resource_version: rr.metadata.resource_version.clone(),
            created: rr
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
        }
    }
}

fn version(rv: &Option<String>) -> u64 {
    rv.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[derive(Debug, Default)]
struct Index {
    synced: bool,
    by_fingerprint: HashMap<String, HashMap<String, Summary>>,
    staging: Option<HashMap<String, HashMap<String, Summary>>>,
}

/// The index and the task that keeps it (stopped when the last handle drops).
#[derive(Debug, Clone)]
pub(crate) struct WatchCache {
    index: Arc<Mutex<Index>>,
    /// `true` once the first full list arrived.
    synced: Arc<tokio::sync::watch::Sender<bool>>,
    _task: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn upsert(map: &mut HashMap<String, HashMap<String, Summary>>, rr: &RemediationRequest) {
    let summary = Summary::of(rr);
    let requests = map.entry(rr.spec.signal_fingerprint.clone()).or_default();
    match requests.get(&summary.name) {
        Some(known) if version(&known.resource_version) > version(&summary.resource_version) => {}
        _ => {
            requests.insert(summary.name.clone(), summary);
        }
    }
}

impl WatchCache {
    /// Starts watching `api` (needs a tokio runtime).
    pub(crate) fn start(api: Api<RemediationRequest>) -> Self {
        let index = Arc::new(Mutex::new(Index::default()));
        let kept = index.clone();
        let synced = Arc::new(tokio::sync::watch::Sender::new(false));
        let announce = synced.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "RemediationRequest watch failed; retrying");
                        continue;
                    }
                };
                let mut index = kept.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    watcher::Event::Init => index.staging = Some(HashMap::new()),
                    watcher::Event::InitApply(rr) => {
                        if let Some(staging) = index.staging.as_mut() {
                            upsert(staging, &rr);
                        }
                    }
                    watcher::Event::InitDone => {
                        if let Some(staging) = index.staging.take() {
                            index.by_fingerprint = staging;
                        }
                        index.synced = true;
                        announce.send_replace(true);
                    }
                    watcher::Event::Apply(rr) => upsert(&mut index.by_fingerprint, &rr),
                    watcher::Event::Delete(rr) => {
                        if let Some(requests) =
                            index.by_fingerprint.get_mut(&rr.spec.signal_fingerprint)
                        {
                            requests.remove(rr.metadata.name.as_deref().unwrap_or(""));
                        }
                    }
                }
            }
        });
        Self {
            index,
            synced,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    /// The requests of `fingerprint`, or `None` before the first full list.
    pub(crate) fn requests_of(&self, fingerprint: &str) -> Option<Vec<Summary>> {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.synced.then(|| {
            index
                .by_fingerprint
                .get(fingerprint)
                .map(|r| r.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Folds in an object the API server just returned to one of our writes or reads.
    pub(crate) fn observe(&self, rr: &RemediationRequest) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        upsert(&mut index.by_fingerprint, rr);
    }

    /// Whether the first full list arrived.
    pub(crate) fn is_synced(&self) -> bool {
        self.index.lock().unwrap_or_else(|p| p.into_inner()).synced
    }

    /// Resolves once the first full list arrived.
    pub(crate) async fn synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as `self`: the wait cannot fail.
        let _ = synced.wait_for(|s| *s).await;
    }
}
