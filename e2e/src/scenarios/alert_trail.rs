//! Scenario 1: an alert creates a RemediationRequest whose audit trail is
//! exactly `signal.received`, `crd.created`; the same alert again is a
//! duplicate recorded as `signal.deduplicated` with the count; the chain of
//! that correlation verifies.

use anyhow::{bail, ensure, Context};

use super::client::{types, unique, Stack, CREATED, DEDUPLICATED, RECEIVED};
use super::TRAIL_TIMEOUT;

pub async fn run(stack: &Stack) -> anyhow::Result<()> {
    let target = unique("checkout");
    let first = stack.send_expecting(&target, 201).await?;
    let rr = first
        .remediation_request
        .context("a 201 answer names the RemediationRequest")?;

    let trail = stack.trail_of_at_least(&rr, 2, TRAIL_TIMEOUT).await?;
    ensure!(
        types(&trail) == [RECEIVED, CREATED],
        "trail of {rr} after one alert: {:?}",
        types(&trail)
    );

    let again = stack.send_expecting(&target, 202).await?;
    ensure!(
        again.remediation_request.as_deref() == Some(rr.as_str()),
        "the duplicate joined {:?}, not {rr}",
        again.remediation_request
    );
    ensure!(
        again.occurrence_count == Some(2),
        "occurrence_count {:?}",
        again.occurrence_count
    );

    let trail = stack.trail_of_at_least(&rr, 3, TRAIL_TIMEOUT).await?;
    ensure!(
        types(&trail) == [RECEIVED, CREATED, DEDUPLICATED],
        "trail of {rr} after the repeat: {:?}",
        types(&trail)
    );
    let count = trail[2].event.event_data.get("occurrence_count");
    ensure!(
        count == Some(&serde_json::json!(2)),
        "signal.deduplicated carries occurrence_count {count:?}"
    );

    let report = stack.verify(&rr).await?;
    if !report.is_valid || report.total_events != 3 {
        bail!("chain of {rr} does not verify: {report:?}");
    }
    Ok(())
}
