//! RemediationRequests in process memory, for running without a cluster.
//!
//! The same semantics as the Kubernetes backend: one active request per
//! fingerprint, duplicates counted on it. A request stops being active
//! `active_for` after its creation, standing in for the remediation finishing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::stripes::Stripes;
use super::{ActiveRequest, BackendError, Created, HeldLock, NewRequest, RemediationBackend};
use crate::domain::fingerprint::Fingerprint;

/// Past this many stored requests, inactive ones are forgotten, so a long run
/// with many distinct targets keeps bounded memory.
const MAX_RETAINED: usize = 10_000;

/// A stored RemediationRequest, as tests see it.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    /// Name.
    pub name: String,
    /// Fingerprint.
    pub fingerprint: Fingerprint,
    /// Signals absorbed.
    pub occurrence_count: u64,
    /// Last time a signal joined it.
    pub last_seen_at: DateTime<Utc>,
    /// The request as created.
    pub request: NewRequest,
}

#[derive(Debug)]
struct Entry {
    stored: StoredRequest,
    created: Instant,
}

/// The in-memory backend.
#[derive(Debug)]
pub struct MemoryBackend {
    active_for: Duration,
    stripes: Stripes,
    /// Every request by name (kept after it stops being active, like the
    /// cluster keeps completed custom resources) and the active one by fingerprint.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_name: HashMap<String, Entry>,
    active: HashMap<Fingerprint, String>,
}

impl MemoryBackend {
    /// A backend whose requests stay active for `active_for`.
    pub fn new(active_for: Duration) -> Self {
        Self {
            active_for,
            stripes: Stripes::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// Every request created so far, in no particular order.
    pub fn requests(&self) -> Vec<StoredRequest> {
        let state = self.state.lock().expect("memory backend lock poisoned");
        state.by_name.values().map(|e| e.stored.clone()).collect()
    }

    /// One request by name.
    pub fn get(&self, name: &str) -> Option<StoredRequest> {
        let state = self.state.lock().expect("memory backend lock poisoned");
        state.by_name.get(name).map(|e| e.stored.clone())
    }
}

#[async_trait]
impl RemediationBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn lock(&self, fingerprint: &Fingerprint) -> Result<Box<dyn HeldLock>, BackendError> {
        Ok(self.stripes.lock(fingerprint).await)
    }

    async fn find_active(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<Option<ActiveRequest>, BackendError> {
        let mut state = self.state.lock().expect("memory backend lock poisoned");
        let Some(name) = state.active.get(fingerprint).cloned() else {
            return Ok(None);
        };
        match state.by_name.get(&name) {
            Some(e) if e.created.elapsed() < self.active_for => Ok(Some(ActiveRequest {
                name,
                occurrence_count: e.stored.occurrence_count,
                version: None,
                recent_signals: Vec::new(),
                first_seen_at: None,
            })),
            _ => {
                state.active.remove(fingerprint);
                Ok(None)
            }
        }
    }

    async fn create(&self, request: &NewRequest) -> Result<Created, BackendError> {
        let mut state = self.state.lock().expect("memory backend lock poisoned");
        if state.by_name.len() >= MAX_RETAINED {
            let active_for = self.active_for;
            let State { by_name, active } = &mut *state;
            by_name.retain(|_, e| e.created.elapsed() < active_for);
            active.retain(|_, name| by_name.contains_key(name));
        }
        if state.by_name.contains_key(&request.name) {
            return Err(BackendError::Rejected(format!(
                "a RemediationRequest named {} already exists",
                request.name
            )));
        }
        state
            .active
            .insert(request.fingerprint.clone(), request.name.clone());
        state.by_name.insert(
            request.name.clone(),
            Entry {
                stored: StoredRequest {
                    name: request.name.clone(),
                    fingerprint: request.fingerprint.clone(),
                    occurrence_count: 1,
                    last_seen_at: request.signal.received_time,
                    request: request.clone(),
                },
                created: Instant::now(),
            },
        );
        Ok(Created::New)
    }

    async fn record_occurrence(
        &self,
        active: &ActiveRequest,
        seen_at: DateTime<Utc>,
    ) -> Result<u64, BackendError> {
        let mut state = self.state.lock().expect("memory backend lock poisoned");
        let entry = state
            .by_name
            .get_mut(&active.name)
            .ok_or_else(|| BackendError::Rejected(format!("{} no longer exists", active.name)))?;
        entry.stored.occurrence_count += 1;
        entry.stored.last_seen_at = seen_at;
        Ok(entry.stored.occurrence_count)
    }

    async fn check_ready(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::signal::{ResourceRef, Signal, SignalSource};

    fn request(name: &str, fingerprint: &Fingerprint) -> NewRequest {
        let target = ResourceRef::new(Some("payments"), "Deployment", "api");
        NewRequest {
            name: name.to_owned(),
            fingerprint: fingerprint.clone(),
            target: target.clone(),
            signal: Signal {
                name: "HighMemory".into(),
                severity: "critical".into(),
                source: SignalSource::Prometheus,
                target,
                labels: Default::default(),
                annotations: Default::default(),
                firing_time: None,
                received_time: Utc::now(),
                payload: serde_json::Value::Null,
            },
        }
    }

    fn fp() -> Fingerprint {
        Fingerprint::of(
            None,
            &ResourceRef::new(Some("payments"), "Deployment", "api"),
        )
    }

    #[tokio::test]
    async fn a_created_request_is_active_and_counts_occurrences() {
        let backend = MemoryBackend::new(Duration::from_secs(60));
        assert_eq!(backend.find_active(&fp()).await.unwrap(), None);
        backend.create(&request("rr-a", &fp())).await.unwrap();
        let active = backend.find_active(&fp()).await.unwrap().unwrap();
        assert_eq!(active.name, "rr-a");
        assert_eq!(active.occurrence_count, 1);
        let count = backend
            .record_occurrence(&active, Utc::now())
            .await
            .unwrap();
        assert_eq!(count, 2);
        assert_eq!(backend.get("rr-a").unwrap().occurrence_count, 2);
    }

    #[tokio::test]
    async fn a_request_stops_absorbing_after_active_for_but_stays_visible() {
        let backend = MemoryBackend::new(Duration::ZERO);
        backend.create(&request("rr-a", &fp())).await.unwrap();
        assert_eq!(backend.find_active(&fp()).await.unwrap(), None);
        assert!(backend.get("rr-a").is_some());
    }

    #[tokio::test]
    async fn a_name_cannot_be_created_twice() {
        let backend = MemoryBackend::new(Duration::from_secs(60));
        backend.create(&request("rr-a", &fp())).await.unwrap();
        let err = backend.create(&request("rr-a", &fp())).await.unwrap_err();
        assert_eq!(err.code(), "backend_rejected");
    }

    #[tokio::test]
    async fn the_lock_of_a_fingerprint_is_exclusive() {
        let backend = MemoryBackend::new(Duration::from_secs(60));
        let held = backend.lock(&fp()).await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(50), backend.lock(&fp())).await;
        assert!(second.is_err(), "a second holder got the lock");
        held.release().await;
        drop(
            tokio::time::timeout(Duration::from_millis(50), backend.lock(&fp()))
                .await
                .unwrap(),
        );
    }
}
