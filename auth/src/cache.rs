//! The review decision cache: bounded in size and in age, single-flight.
//!
//! `moka` bounds the size (least-recently-used entries are evicted past
//! `auth.cache_capacity`) and coalesces a burst of requests carrying one new
//! token into one review (`try_get_with`). The age of an entry is checked
//! against tokio's clock as well as moka's own, so a TTL is testable on
//! paused time. Failures are not cached (the next caller retries).

use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use moka::future::Cache;
use tokio::time::Instant;

/// Values of type `V` under keys `K`, each valid for `ttl`.
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Cache<K, (Instant, V)>,
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<K, V> TtlCache<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` entries, each valid for `ttl`.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            ttl,
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
        }
    }

    /// The cached value of `key`, or the result of `init` (cached when `Ok`).
    pub async fn get_or_try_init<E, F, Fut>(&self, key: K, init: F) -> Result<V, E>
    where
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some((at, value)) = self.entries.get(&key).await {
            if at.elapsed() < self.ttl {
                return Ok(value);
            }
            self.entries.invalidate(&key).await;
        }
        self.entries
            .try_get_with(key, async { init().await.map(|v| (Instant::now(), v)) })
            .await
            .map(|(_, v)| v)
            .map_err(|e| (*e).clone())
    }

    /// Forgets `key`.
    pub async fn invalidate(&self, key: &K) {
        self.entries.invalidate(key).await;
    }

    /// Entries held (after pending evictions ran).
    #[cfg(test)]
    pub async fn len(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_misses_run_init_once() {
        let cache = Arc::new(TtlCache::<u8, u32>::new(Duration::from_secs(60), 100));
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

    #[tokio::test(start_paused = true)]
    async fn a_decision_is_reused_within_its_ttl_and_reviewed_again_after_it() {
        let cache = TtlCache::<u8, u32>::new(Duration::from_secs(10), 100);
        let calls = AtomicUsize::new(0);
        let review = || async { Ok::<_, ()>(calls.fetch_add(1, Ordering::SeqCst) as u32) };
        assert_eq!(cache.get_or_try_init(1, review).await, Ok(0));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(
            cache.get_or_try_init(1, review).await,
            Ok(0),
            "cached at 9 s"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache.get_or_try_init(1, review).await,
            Ok(1),
            "reviewed again at 11 s"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_not_cached() {
        let cache = TtlCache::<u8, u32>::new(Duration::from_secs(10), 100);
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
        assert_eq!(
            cache
                .get_or_try_init(1, || async { Ok::<_, &str>(2) })
                .await,
            Ok(1)
        );
    }

    #[tokio::test]
    async fn the_cache_holds_at_most_its_capacity() {
        let cache = TtlCache::<u32, u32>::new(Duration::from_secs(60), 50);
        for key in 0..1_000 {
            cache
                .get_or_try_init(key, || async { Ok::<_, ()>(key) })
                .await
                .unwrap();
        }
        let held = cache.len().await;
        println!("1000 distinct tokens, capacity 50: {held} held");
        assert!(held <= 50, "{held}");
    }
}
