//! A remediation backend that is unavailable for its first calls, standing in
//! for an API server that times out or answers 503 while it restarts.
//!
//! It wraps the real memory backend and fails the first `find_failures` calls
//! to `find_active` and the first `create_failures` calls to `create` with
//! `BackendError::Unavailable`. A failing `create` stores the request before it fails, as an API server does when it
//! commits an object and the answer is lost: the worst case for a retry, which
//! must find that request instead of creating a second one. It does not model
//! latency, watches or owner resolution (the Kubernetes backend's own tests do).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gateway::domain::fingerprint::Fingerprint;
use gateway::remediation::memory::MemoryBackend;
use gateway::remediation::{
    ActiveRequest, BackendError, Created, HeldLock, NewRequest, RemediationBackend,
};

#[derive(Debug)]
pub struct FlakyBackend {
    pub inner: Arc<MemoryBackend>,
    find_failures: AtomicU32,
    create_failures: AtomicU32,
    /// Calls answered `Unavailable` so far.
    pub failed: AtomicU32,
}

impl FlakyBackend {
    /// Fails the first `find_failures` lookups and `create_failures` creations.
    pub fn new(inner: Arc<MemoryBackend>, find_failures: u32, create_failures: u32) -> Self {
        Self {
            inner,
            find_failures: AtomicU32::new(find_failures),
            create_failures: AtomicU32::new(create_failures),
            failed: AtomicU32::new(0),
        }
    }

    /// Whether this call fails (consuming one of `budget`).
    fn fail_now(&self, budget: &AtomicU32) -> bool {
        let failing = budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        failing
    }

    fn unavailable() -> BackendError {
        BackendError::Unavailable("API server answered 503 (test double)".into())
    }
}

#[async_trait]
impl RemediationBackend for FlakyBackend {
    fn name(&self) -> &'static str {
        "flaky"
    }

    async fn lock(&self, fp: &Fingerprint) -> Result<Box<dyn HeldLock>, BackendError> {
        self.inner.lock(fp).await
    }

    async fn find_active(&self, fp: &Fingerprint) -> Result<Option<ActiveRequest>, BackendError> {
        if self.fail_now(&self.find_failures) {
            return Err(Self::unavailable());
        }
        self.inner.find_active(fp).await
    }

    async fn create(&self, request: &NewRequest) -> Result<Created, BackendError> {
        let fail = self.fail_now(&self.create_failures);
        let created = self.inner.create(request).await?;
        if fail {
            return Err(Self::unavailable());
        }
        Ok(created)
    }

    async fn record_occurrence(
        &self,
        active: &ActiveRequest,
        seen_at: DateTime<Utc>,
    ) -> Result<u64, BackendError> {
        self.inner.record_occurrence(active, seen_at).await
    }

    async fn check_ready(&self) -> Result<(), BackendError> {
        Ok(())
    }
}
