//! The lifecycle state `/readyz` reports: starting → ready → draining.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// Shared, cheap-to-clone lifecycle flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listeners bound, not yet serving traffic.
    Starting,
    /// Serving.
    Ready,
    /// A stop signal arrived; new traffic should go elsewhere.
    Draining,
}

impl Readiness {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            STARTING => Phase::Starting,
            READY => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Marks the process as serving (ignored once draining).
    pub fn set_ready(&self) {
        let _ = self
            .0
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Marks the process as draining; irreversible.
    pub fn set_draining(&self) {
        self.0.store(DRAINING, Ordering::Release);
    }
}
