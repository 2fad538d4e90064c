//! Scenario 5: SIGTERM to the Gateway under steady load: every signal it
//! answered 2xx has its audit events stored.

use anyhow::ensure;

use super::client::{unique, Stack};
use super::load::{answered_requests, Load};
use super::TRAIL_TIMEOUT;
use crate::platform::{Component, Platform};

const ALERTS: usize = 600;
const PER_SECOND: u32 = 100;
/// Alerts sent before the SIGTERM.
const BEFORE_STOP: usize = 150;

pub async fn run(platform: &mut dyn Platform, stack: &Stack) -> anyhow::Result<()> {
    let since = stack.window_start(chrono::Duration::seconds(5)).await?;
    let mut load = Load::start(stack, &unique("shutdown"), ALERTS, PER_SECOND);
    load.wait_sent(BEFORE_STOP).await?;
    platform.stop(Component::Gateway).await?;
    let answers = load.finish().await?;

    let requests = answered_requests(&answers);
    ensure!(
        requests.len() >= BEFORE_STOP / 2,
        "only {} alerts were answered before the shutdown",
        requests.len()
    );
    let stored = stack
        .expect_created_trails(since, &requests, TRAIL_TIMEOUT)
        .await;
    platform.start(Component::Gateway).await?;
    stack
        .wait_ready("gateway", &stack.endpoints.gateway_health, TRAIL_TIMEOUT)
        .await?;
    stored
}
