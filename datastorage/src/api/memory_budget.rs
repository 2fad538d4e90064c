//! The memory that parsed ingest bodies may hold at once.
//!
//! The concurrency limit bounds how many bodies are in memory, the body limit
//! how large each one is; neither bounds what a body becomes once parsed (a
//! 5 MiB body of tiny objects is ~450 MB of `Value` tree). Each ingest body is
//! measured first ([`super::json_cost`]), and its estimate is reserved here
//! before it is parsed and released when its request ends. A body that can
//! never fit is refused with 413, so the client (the SDK bisects on it) sends
//! fewer events per batch; one that finds the budget in use by others waits a
//! moment and is then refused with 503 and `Retry-After`, like the load limit.

use std::sync::Arc;
use std::time::Duration;

use audit_sdk::problem::ProblemType;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::json_cost::JsonCost;
use super::problem::ApiError;

/// How long a body waits for budget held by other requests before 503.
const WAIT: Duration = Duration::from_secs(2);
/// Memory of one typed event beyond its parsed JSON (the struct, ids, times).
const PER_EVENT: u64 = 1024;
/// Storing a batch makes short-lived copies of about its text: the canonical
/// JSON of every event and the rows the backend sends.
const TRANSIENT_COPIES: u64 = 2;
/// Permits count KiB, so a budget of gigabytes fits the semaphore's `u32` grants.
const UNIT: u64 = 1024;

/// The shared budget (cheap to clone).
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    per_request_max: u64,
}

/// Budget held by one request until it is dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

impl MemoryBudget {
    /// A budget of `bytes` in all; one request may take at most half of it.
    pub fn new(bytes: usize) -> Self {
        let units = (bytes as u64 / UNIT).max(2);
        Self {
            permits: Arc::new(Semaphore::new(units as usize)),
            per_request_max: units / 2 * UNIT,
        }
    }

    /// The most one request may reserve, in bytes.
    pub fn per_request_max(&self) -> u64 {
        self.per_request_max
    }

    /// What storing a body of `body_len` bytes measured as `cost` will hold.
    pub fn charge(cost: &JsonCost, body_len: usize) -> u64 {
        let events = cost.items.unwrap_or(1) as u64;
        cost.bytes + events * PER_EVENT + TRANSIENT_COPIES * body_len as u64
    }

    /// Reserves `bytes`: 413 when it can never fit, 503 when the budget stays
    /// taken by other requests for longer than a moment.
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation, ApiError> {
        if bytes > self.per_request_max {
            return Err(ApiError::new(
                ProblemType::PayloadTooLarge,
                format!(
                    "the body would take about {} MiB of memory once parsed, more than the \
                     {} MiB one request may use (many small JSON values cost far more than \
                     their text); send fewer events per batch",
                    bytes.div_ceil(1 << 20),
                    self.per_request_max >> 20
                ),
            ));
        }
        // At most per_request_max / UNIT, which came from a usize: fits u32
        // for any budget below 4 TiB.
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        match tokio::time::timeout(WAIT, self.permits.clone().acquire_many_owned(units)).await {
            Ok(Ok(permit)) => Ok(Reservation { _permit: permit }),
            // Timed out (or closed, which never happens: nothing closes it).
            _ => {
                metrics::counter!(crate::telemetry::names::REQUESTS_SHED).increment(1);
                Err(ApiError::overloaded(
                    "the server's memory for parsing request bodies is in use by other \
                     requests; retry later",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn too_large_is_413_and_busy_is_503_after_a_wait() {
        let budget = MemoryBudget::new(4 << 20);
        assert_eq!(budget.per_request_max(), 2 << 20);
        let err = budget.reserve(3 << 20).await.unwrap_err();
        assert_eq!(err.problem().status, 413);
        let a = budget.reserve(2 << 20).await.unwrap();
        let _b = budget.reserve(2 << 20).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = budget.reserve(1 << 20).await.unwrap_err();
        assert_eq!(err.problem().status, 503);
        assert_eq!(started.elapsed(), WAIT);
        drop(a);
        budget.reserve(1 << 20).await.unwrap();
    }
}
