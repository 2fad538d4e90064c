//! Scenario 4: the reference platform's misconfiguration. The Gateway starts
//! with a `data_storage_url` whose host does not resolve: its `/readyz` stays
//! 503 (DataStorage never answered since start, so a rollout stalls) and its
//! log has one ERROR naming the host. Restarted with the right URL, it
//! delivers every audit event recorded meanwhile (from its spool).
//!
//! Where the platform routes only to Ready Pods (Kind, like production), a
//! Gateway that is not Ready receives no alert at all: there the scenario
//! sends none and proves the stall (never Ready, one ERROR) and the recovery.

use std::time::Duration;

use anyhow::{ensure, Context};

use super::client::{eventually, unique, Stack};
use super::TRAIL_TIMEOUT;
use crate::platform::{Component, Platform};

const ALERTS: usize = 20;

/// ERROR lines of a JSON or text log that mention `host`.
fn errors_naming(log: &str, host: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(host))
        .filter(|l| {
            l.contains("\"level\":\"ERROR\"") || l.split_whitespace().nth(1) == Some("ERROR")
        })
        .map(str::to_owned)
        .collect()
}

pub async fn run(platform: &mut dyn Platform, stack: &Stack) -> anyhow::Result<()> {
    let since = stack.window_start(chrono::Duration::seconds(5)).await?;
    let wrong = platform.unresolvable_data_storage_url();
    let host = url::Url::parse(&wrong)?
        .host_str()
        .context("the wrong URL has a host")?
        .to_owned();
    platform
        .restart_gateway_with_data_storage_url(Some(&wrong))
        .await?;

    // The SDK's startup check reports the name it could not resolve.
    let platform_ref: &dyn Platform = platform;
    eventually(
        "an ERROR naming the host in the gateway log",
        Duration::from_secs(30),
        || async {
            let log = platform_ref.logs(Component::Gateway).await?;
            Ok(if errors_naming(&log, &host).is_empty() {
                Err(format!(
                    "{} log lines, none an ERROR naming {host}",
                    log.lines().count()
                ))
            } else {
                Ok(())
            })
        },
    )
    .await?;

    let alerts = if platform.routes_to_unready() {
        ALERTS
    } else {
        0
    };
    let mut requests = Vec::new();
    for i in 0..alerts {
        let answer = stack
            .send_expecting(&format!("{}-{i}", unique("wrongsvc")), 201)
            .await?;
        requests.extend(answer.remediation_request);
    }
    let ready = stack.readyz(&stack.endpoints.gateway_health).await;
    ensure!(
        ready == 503,
        "gateway /readyz with an unresolvable DataStorage: {ready}"
    );
    let log = platform.logs(Component::Gateway).await?;
    let errors = errors_naming(&log, &host);
    ensure!(
        errors.len() == 1,
        "expected one ERROR naming {host}, found {}:\n{}",
        errors.len(),
        errors.join("\n")
    );

    platform.restart_gateway_with_data_storage_url(None).await?;
    stack
        .wait_ready("gateway", &stack.endpoints.gateway_health, TRAIL_TIMEOUT)
        .await?;
    stack
        .expect_created_trails(since, &requests, TRAIL_TIMEOUT)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_error_lines_naming_the_host_count() {
        let log = concat!(
            "{\"level\":\"ERROR\",\"fields\":{\"message\":\"cannot resolve datastorage.x\"}}\n",
            "{\"level\":\"WARN\",\"fields\":{\"message\":\"retrying datastorage.x\"}}\n",
            "{\"level\":\"ERROR\",\"fields\":{\"message\":\"something else\"}}\n",
            "2026-11-28T10:00:00Z ERROR gateway: datastorage.x does not resolve\n",
        );
        assert_eq!(errors_naming(log, "datastorage.x").len(), 2);
    }
}
