//! Scenario 3: DataStorage is killed while 2,000 alerts arrive, then restored:
//! every audit event of every answered alert is stored, none twice.

use anyhow::ensure;

use super::client::{unique, Stack};
use super::load::{answered_requests, Load};
use super::OUTAGE_TRAIL_TIMEOUT;
use crate::platform::{Component, Platform};

const ALERTS: usize = 2_000;
const PER_SECOND: u32 = 400;

pub async fn run(platform: &mut dyn Platform, stack: &Stack) -> anyhow::Result<()> {
    let since = stack.window_start(chrono::Duration::seconds(5)).await?;
    platform.kill(Component::DataStorage).await?;

    let answers = Load::start(stack, &unique("outage"), ALERTS, PER_SECOND)
        .finish()
        .await?;
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
        "{} of {ALERTS} alerts not answered 201 during the outage (statuses {:?})",
        refused.len(),
        &refused[..refused.len().min(10)]
    );

    platform.start(Component::DataStorage).await?;
    stack
        .expect_created_trails(since, &requests, OUTAGE_TRAIL_TIMEOUT)
        .await
}
