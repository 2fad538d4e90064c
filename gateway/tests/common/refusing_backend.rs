//! A remediation backend that finds nothing, cannot create anything and is
//! never ready: an API server that refuses every connection. It locks through
//! the real memory backend; it models nothing else.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gateway::domain::fingerprint::Fingerprint;
use gateway::remediation::memory::MemoryBackend;
use gateway::remediation::{
    ActiveRequest, BackendError, Created, HeldLock, NewRequest, RemediationBackend,
};

#[derive(Debug)]
pub struct RefusingBackend(pub MemoryBackend);

fn refused() -> BackendError {
    BackendError::Unavailable("connection refused (test)".into())
}

#[async_trait]
impl RemediationBackend for RefusingBackend {
    fn name(&self) -> &'static str {
        "refusing"
    }
    async fn lock(&self, fp: &Fingerprint) -> Result<Box<dyn HeldLock>, BackendError> {
        self.0.lock(fp).await
    }
    async fn find_active(&self, _: &Fingerprint) -> Result<Option<ActiveRequest>, BackendError> {
        Ok(None)
    }
    async fn create(&self, _: &NewRequest) -> Result<Created, BackendError> {
        Err(refused())
    }
    async fn record_occurrence(
        &self,
        _: &ActiveRequest,
        _: DateTime<Utc>,
    ) -> Result<u64, BackendError> {
        unreachable!("nothing is ever active")
    }
    async fn check_ready(&self) -> Result<(), BackendError> {
        Err(refused())
    }
}
