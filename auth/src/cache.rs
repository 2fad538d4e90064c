//! A small TTL cache with single-flight initialisation.
//!
//! A burst of requests carrying one new token must cost one review, not one per
//! request: the first caller creates the slot and runs the review; the others
//! wait on the same slot. Failures are not cached (the next caller retries).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// Entries kept before expired ones are swept.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
struct Slot<V> {
    created: Instant,
    value: OnceCell<V>,
}

/// Values of type `V` under keys `K`, each valid for `ttl`.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    slots: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value of `key`, or the result of `init` (cached when `Ok`).
    pub async fn get_or_try_init<E, F, Fut>(&self, key: K, init: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = |s: &Slot<V>| s.created.elapsed() < self.ttl;
            match slots.get(&key) {
                Some(slot) if fresh(slot) => slot.clone(),
                _ => {
                    if slots.len() >= MAX_ENTRIES {
                        slots.retain(|_, s| fresh(s));
                        if slots.len() >= MAX_ENTRIES {
                            slots.clear();
                        }
                    }
                    let slot = Arc::new(Slot {
                        created: Instant::now(),
                        value: OnceCell::new(),
                    });
                    slots.insert(key, slot.clone());
                    slot
                }
            }
        };
        slot.value.get_or_try_init(init).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_misses_run_init_once() {
        let cache = Arc::new(TtlCache::<u8, u32>::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_try_init(1, || async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            Ok::<_, ()>(7)
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_entries_expire() {
        let cache = TtlCache::<u8, u32>::new(Duration::ZERO);
        assert_eq!(
            cache
                .get_or_try_init(1, || async { Err::<u32, _>("down") })
                .await,
            Err("down")
        );
        assert_eq!(
            cache
                .get_or_try_init(1, || async { Ok::<_, &str>(1) })
                .await,
            Ok(1)
        );
        // TTL zero: the next lookup runs init again.
        assert_eq!(
            cache
                .get_or_try_init(1, || async { Ok::<_, &str>(2) })
                .await,
            Ok(2)
        );
    }
}
