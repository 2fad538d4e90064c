//! Striped in-process locks per fingerprint: fingerprints share a lock when
//! their hashes collide, which only costs concurrency, never correctness, and
//! keeps memory bounded however many fingerprints pass through.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OwnedMutexGuard;

use super::HeldLock;
use crate::domain::fingerprint::Fingerprint;

/// Number of stripes.
const STRIPES: usize = 256;

/// The locks.
#[derive(Debug)]
pub(crate) struct Stripes(Vec<Arc<tokio::sync::Mutex<()>>>);

impl Default for Stripes {
    fn default() -> Self {
        Self(
            (0..STRIPES)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
        )
    }
}

impl Stripes {
    /// Waits for the stripe of `fingerprint`.
    pub(crate) async fn lock(&self, fingerprint: &Fingerprint) -> Box<dyn HeldLock> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        fingerprint.hash(&mut h);
        let stripe = self.0[(h.finish() as usize) % STRIPES].clone();
        Box::new(StripeGuard(stripe.lock_owned().await))
    }
}

#[derive(Debug)]
struct StripeGuard(#[allow(dead_code)] OwnedMutexGuard<()>);

#[async_trait]
impl HeldLock for StripeGuard {
    async fn release(self: Box<Self>) {}
}
