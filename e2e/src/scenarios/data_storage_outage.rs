//! Scenario 3: DataStorage is killed while 2,000 alerts arrive, then restored:
//! every audit event of every answered alert is stored, none twice.
//!
//! On a platform whose Gateway creates RemediationRequests in a real API
//! server (Kind), the alert rate is sized from that server's budget and the
//! API calls one new signal costs, so the scenario tests the spool, not a
//! one-node control plane's throttling; the 429s it answered are printed.

use anyhow::ensure;

use super::client::{unique, Stack};
use super::load::{answered_requests, Load};
use super::OUTAGE_TRAIL_TIMEOUT;
use crate::platform::{Component, Platform};

const ALERTS: usize = 2_000;
/// Without a Kubernetes API (memory backend): the Gateway's own limit.
const PER_SECOND: u32 = 400;
/// Kubernetes API requests one new signal costs the Gateway's backend: one
/// write (the create; no status initialisation and no reads in steady state,
/// which `gateway/tests/kubernetes_backend.rs` asserts on the fake API server)
/// plus one owner lookup when its cache misses. The Lease design this replaced
/// cost 6 (400 alerts/s was ~2,400 requests/s).
pub const API_CALLS_PER_SIGNAL: u32 = 2;

/// Alerts per second for a platform with `budget` API requests per second.
pub fn alert_rate(budget: Option<u32>) -> u32 {
    budget.map_or(PER_SECOND, |b| {
        (b / API_CALLS_PER_SIGNAL).clamp(1, PER_SECOND)
    })
}

/// Answers the table's note: the rate and the API server's 429s meanwhile.
pub async fn run(platform: &mut dyn Platform, stack: &Stack) -> anyhow::Result<String> {
    let since = stack.window_start(chrono::Duration::seconds(5)).await?;
    let rate = alert_rate(platform.kube_api_budget());
    let throttled_before = platform.api_throttled().await?;
    platform.kill(Component::DataStorage).await?;

    let answers = Load::start(stack, &unique("outage"), ALERTS, rate)
        .finish()
        .await?;
    let throttled = match (throttled_before, platform.api_throttled().await?) {
        (Some(before), Some(after)) => format!("{} API 429s", after.saturating_sub(before)),
        _ => "no API server".to_owned(),
    };
    eprintln!("data-storage-outage: {ALERTS} alerts at {rate}/s, {throttled}");
    let requests = answered_requests(&answers);
    let refused: Vec<u16> = answers
        .iter()
        .filter(|a| a.request().is_none())
        .map(|a| a.status)
        .collect();
    // The Gateway answers from its own state: a DataStorage outage never
    // changes the answer.
    ensure!(
        refused.is_empty() && requests.len() == ALERTS,
        "{} of {ALERTS} alerts not answered 201 during the outage (statuses {:?}; {rate}/s, {throttled})",
        refused.len(),
        &refused[..refused.len().min(10)]
    );

    platform.start(Component::DataStorage).await?;
    stack
        .expect_created_trails(since, &requests, OUTAGE_TRAIL_TIMEOUT)
        .await?;
    Ok(format!("{ALERTS} alerts at {rate}/s, {throttled}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_follows_the_api_budget() {
        assert_eq!(alert_rate(None), PER_SECOND);
        assert_eq!(alert_rate(Some(300)), 150);
        assert_eq!(alert_rate(Some(1)), 1);
        assert_eq!(alert_rate(Some(1_000_000)), PER_SECOND);
    }
}
