//! Scenario 7: readiness does not cascade. DataStorage is down for 30 s while
//! alerts arrive; the Gateway stays Ready (`/readyz` 200: its spool absorbs
//! the outage, the degraded state shows in the body) and answers every alert
//! 2xx throughout, and every trail is stored once DataStorage is back.
//!
//! On Kind this is what keeps the Gateway behind `gateway-service` (no
//! `publishNotReadyAddresses`): a 503 there would take every Pod out of the
//! Service exactly when AlertManager needs it.

use std::time::Duration;

use anyhow::ensure;
use tokio::time::Instant;

use super::client::{alert, unique, Stack};
use super::load::answered_requests;
use super::{OUTAGE_TRAIL_TIMEOUT, TRAIL_TIMEOUT};
use crate::platform::{Component, Platform};

/// How long DataStorage stays down (the figure).
const OUTAGE: Duration = Duration::from_secs(30);
/// One alert and one `/readyz` every this long during the outage (~300 each):
/// enough to see a flap, far below any rate limit.
const INTERVAL: Duration = Duration::from_millis(100);

pub async fn run(platform: &mut dyn Platform, stack: &Stack) -> anyhow::Result<()> {
    let since = stack.window_start(chrono::Duration::seconds(5)).await?;
    // Ready before: DataStorage answered once since the Gateway started.
    stack
        .wait_ready("gateway", &stack.endpoints.gateway_health, TRAIL_TIMEOUT)
        .await?;
    platform.kill(Component::DataStorage).await?;

    let prefix = unique("ready-outage");
    let (mut answers, mut not_ready) = (Vec::new(), Vec::new());
    let mut probes = 0usize;
    let end = Instant::now() + OUTAGE;
    let mut tick = tokio::time::interval(INTERVAL);
    while Instant::now() < end {
        tick.tick().await;
        let i = answers.len();
        answers.push(stack.send(&alert(&format!("{prefix}-{i}"))).await);
        let ready = stack.readyz(&stack.endpoints.gateway_health).await;
        probes += 1;
        if ready != 200 {
            not_ready.push(ready);
        }
    }
    platform.start(Component::DataStorage).await?;

    let requests = answered_requests(&answers);
    let refused: Vec<u16> = answers
        .iter()
        .filter(|a| a.request().is_none())
        .map(|a| a.status)
        .collect();
    eprintln!(
        "ready-through-outage: {} alerts, {} answered 2xx, {probes} /readyz probes, {} not 200 during a {} s outage",
        answers.len(),
        requests.len(),
        not_ready.len(),
        OUTAGE.as_secs()
    );
    ensure!(
        refused.is_empty(),
        "{} of {} alerts not answered 2xx while DataStorage was down (statuses {:?})",
        refused.len(),
        answers.len(),
        &refused[..refused.len().min(10)]
    );
    stack
        .expect_created_trails(since, &requests, OUTAGE_TRAIL_TIMEOUT)
        .await?;
    ensure!(
        not_ready.is_empty(),
        "the Gateway's /readyz was not 200 in {} of {probes} probes while DataStorage was down \
         (statuses {:?}): readiness must not cascade (every trail was stored afterwards)",
        not_ready.len(),
        &not_ready[..not_ready.len().min(10)]
    );
    Ok(())
}
