//! What a service embedding the SDK should answer on its own `/readyz`.
//!
//! The platform's rule is "readiness never cascades": a service is not Ready
//! until DataStorage has answered once after start (a wrong URL or a missing
//! Service then stalls the rollout instead of spooling forever), and after that
//! it stays Ready while it can keep events (spool or memory has room): a
//! DataStorage outage is reported as [`Readiness::Degraded`], never turned into
//! a 503 that would take every audited service out of its load balancer with it.
//!
//! Only the readiness probe ([`crate::preflight`]) decides about DataStorage;
//! delivery no longer writes the same flag, so the state does not flap with
//! every failed batch.

use std::sync::atomic::Ordering;

use crate::shared::Shared;

/// The SDK's readiness, with a reason when it is not plainly Ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// DataStorage answered the last probe.
    Ready,
    /// DataStorage answered once since start but does not now; events are kept
    /// (spool or memory has room) and delivered when it is back. Serve, but say so.
    Degraded(String),
    /// DataStorage never answered since start, or there is no room left to keep
    /// events: do not take traffic whose audit trail cannot be kept.
    Down(String),
}

impl Readiness {
    /// `Ready` or `Degraded`: the service may take traffic.
    pub fn is_serving(&self) -> bool {
        !matches!(self, Self::Down(_))
    }

    /// Value of the `audit_sdk_readiness` gauge: 2 ready, 1 degraded, 0 down.
    pub fn gauge(&self) -> f64 {
        match self {
            Self::Ready => 2.0,
            Self::Degraded(_) => 1.0,
            Self::Down(_) => 0.0,
        }
    }
}

/// What the probe last saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProbeState {
    /// DataStorage answered at least once since start.
    pub answered_once: bool,
    /// The last probe's failure, in words an operator can act on.
    pub failing: Option<String>,
}

/// The readiness of a store: the probe's view plus whether events still fit.
pub(crate) fn evaluate(shared: &Shared) -> Readiness {
    let probe = shared
        .probe
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if !probe.answered_once {
        return Readiness::Down(format!(
            "DataStorage has not answered since start: {}",
            probe
                .failing
                .unwrap_or_else(|| "first probe pending".to_owned())
        ));
    }
    let capacity = shared.config.buffer_capacity;
    if shared.spool_full.load(Ordering::Relaxed) {
        return Readiness::Down(
            "the audit spool is full (spool_max_bytes); new events wait in memory".to_owned(),
        );
    }
    if shared.in_memory.load(Ordering::Relaxed) >= capacity {
        return Readiness::Down(format!(
            "{capacity} audit events wait in memory (buffer_capacity); new events are lost"
        ));
    }
    match probe.failing {
        None => Readiness::Ready,
        Some(reason) => Readiness::Degraded(reason),
    }
}
