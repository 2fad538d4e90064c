//! Scenario 6: PostgreSQL restarts while alerts flow through the Gateway:
//! nothing is lost (DataStorage answers 503, the SDK retries).

use anyhow::ensure;

use super::client::{unique, Stack};
use super::load::{answered_requests, Load};
use super::OUTAGE_TRAIL_TIMEOUT;
use crate::platform::{Component, Platform};

const ALERTS: usize = 400;
const PER_SECOND: u32 = 100;

pub async fn run(platform: &mut dyn Platform, stack: &Stack) -> anyhow::Result<()> {
    let since = stack.window_start(chrono::Duration::seconds(5)).await?;
    let mut load = Load::start(stack, &unique("pgrestart"), ALERTS, PER_SECOND);
    load.wait_sent(ALERTS / 4).await?;
    platform.stop(Component::Postgres).await?;
    let down = stack.readyz(&stack.endpoints.data_storage_health).await;
    load.wait_sent(ALERTS / 2).await?;
    platform.start(Component::Postgres).await?;
    let answers = load.finish().await?;
    // Not ready while its database is down: 503 from the process, or (Kind)
    // no answer at all because the Service routes to ready pods only.
    ensure!(
        down != 200,
        "DataStorage /readyz answered 200 while PostgreSQL was down"
    );

    let requests = answered_requests(&answers);
    ensure!(
        requests.len() == ALERTS,
        "{} of {ALERTS} alerts answered 2xx",
        requests.len()
    );
    stack
        .expect_created_trails(since, &requests, OUTAGE_TRAIL_TIMEOUT)
        .await?;
    for request in requests.iter().step_by(40) {
        let report = stack.verify(request).await?;
        ensure!(report.is_valid, "chain of {request}: {report:?}");
    }
    Ok(())
}
