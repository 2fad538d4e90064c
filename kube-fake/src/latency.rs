//! The per-call latency, held to the microsecond.
//!
//! tokio's timer wheel has 1 ms slots and rounds every deadline up to the
//! next one, so `tokio::time::sleep(2 ms)` answers after 2–3 ms (about 3.2 ms
//! at p50 on the CI machines): a fake configured for "2 ms per call" would
//! charge each call half as much again, and a bench built on it would blame
//! the code under test for the timer. Short latencies therefore sleep on a
//! blocking-pool thread (`nanosleep`, tens of microseconds late); long ones,
//! whose rounding does not matter, stay on the timer so that a caller that
//! gives up (a deadline test against a 30 s latency) does not pin a thread.

use std::time::{Duration, Instant};

/// Latencies up to this are slept precisely on a blocking thread.
const PRECISE_UP_TO: Duration = Duration::from_millis(10);

/// Waits until `latency` after `arrived` (the moment the request reached the
/// handler), so the time spent parsing it counts as part of the latency.
pub(crate) async fn wait(arrived: Instant, latency: Duration) {
    if latency.is_zero() {
        return;
    }
    let deadline = arrived + latency;
    if latency > PRECISE_UP_TO {
        tokio::time::sleep_until(deadline.into()).await;
        return;
    }
    if deadline <= Instant::now() {
        return;
    }
    // The time left is taken on the blocking thread, so the hand-over to it
    // is part of the wait rather than added to it. A panic in `thread::sleep`
    // cannot happen; a join error here would only mean the runtime is
    // shutting down, when the answer no longer matters.
    let _ = tokio::task::spawn_blocking(move || {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()))
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point of the module: 2 ms means 2 ms, not the 3 ms tokio's timer
    /// rounds it to (this test fails with `tokio::time::sleep`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_latency_is_held_to_well_under_a_timer_tick() {
        let latency = Duration::from_millis(2);
        let mut took = Vec::new();
        for _ in 0..50 {
            let arrived = Instant::now();
            wait(arrived, latency).await;
            took.push(arrived.elapsed());
        }
        took.sort();
        let median = took[took.len() / 2];
        assert!(median >= latency, "{median:?}");
        assert!(
            median < latency + Duration::from_micros(700),
            "median {median:?} for a {latency:?} latency"
        );
    }

    #[tokio::test]
    async fn time_already_spent_counts_towards_the_latency() {
        let arrived = Instant::now() - Duration::from_millis(5);
        let started = Instant::now();
        wait(arrived, Duration::from_millis(2)).await;
        assert!(started.elapsed() < Duration::from_millis(1));
    }
}
