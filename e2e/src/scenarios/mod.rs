//! The scenario suite. Each scenario drives a [`Platform`] through the same
//! HTTP endpoints a user would, and proves one promise of the pipeline (or
//! that one failure of the reference platform cannot recur).

mod alert_trail;
mod auth;
pub mod client;
mod data_storage_outage;
mod graceful_shutdown;
mod load;
mod postgres_restart;
mod ready_through_outage;
mod wrong_service;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::platform::{Component, Platform};
use crate::progress::step;
use crate::summary::{Outcome, Row, Summary};
use client::Stack;

/// How long audit events may take to appear when everything is up (the SDK
/// flushes every second).
const TRAIL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after an outage ends (retries back off up to a few seconds).
const OUTAGE_TRAIL_TIMEOUT: Duration = Duration::from_secs(120);

/// One scenario of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Alert → RemediationRequest → exact audit trail, duplicate, chain verifies.
    AlertTrail,
    /// 401 without a token, 403 for the wrong verb.
    Auth,
    /// DataStorage killed while 2,000 alerts arrive, then restored.
    DataStorageOutage,
    /// The Gateway pointed at a Service name that does not resolve.
    WrongServiceName,
    /// SIGTERM to the Gateway under load.
    GracefulShutdown,
    /// PostgreSQL restarted during ingest.
    PostgresRestart,
    /// DataStorage down for 30 s: the Gateway stays Ready and answers 2xx.
    ReadyThroughOutage,
}

impl Scenario {
    /// Every scenario, in run order.
    pub const ALL: [Self; 7] = [
        Self::AlertTrail,
        Self::Auth,
        Self::DataStorageOutage,
        Self::WrongServiceName,
        Self::GracefulShutdown,
        Self::PostgresRestart,
        Self::ReadyThroughOutage,
    ];

    /// The name shown in the summary (and matched by filters).
    pub fn name(self) -> &'static str {
        match self {
            Self::AlertTrail => "1 alert → RR → audit trail, dedup, chain",
            Self::Auth => "2 auth: 401, reader/writer 403",
            Self::DataStorageOutage => "3 DataStorage outage, 2,000 alerts",
            Self::WrongServiceName => "4 wrong Service name, spool replay",
            Self::GracefulShutdown => "5 SIGTERM to gateway under load",
            Self::PostgresRestart => "6 PostgreSQL restart during ingest",
            Self::ReadyThroughOutage => "7 DataStorage down 30 s, gateway stays Ready",
        }
    }

    /// What the stack must contain for this scenario to apply.
    fn needs(self) -> Option<Component> {
        matches!(self, Self::PostgresRestart).then_some(Component::Postgres)
    }

    /// Runs the scenario; `Some(note)` is what it measured for the table.
    async fn run(
        self,
        platform: &mut dyn Platform,
        stack: &Stack,
    ) -> anyhow::Result<Option<String>> {
        match self {
            Self::AlertTrail => alert_trail::run(stack).await,
            Self::Auth => auth::run(stack).await,
            Self::DataStorageOutage => {
                return data_storage_outage::run(platform, stack).await.map(Some)
            }
            Self::WrongServiceName => wrong_service::run(platform, stack).await,
            Self::GracefulShutdown => graceful_shutdown::run(platform, stack).await,
            Self::PostgresRestart => postgres_restart::run(platform, stack).await,
            Self::ReadyThroughOutage => ready_through_outage::run(platform, stack).await,
        }
        .map(|()| None)
    }
}

/// The scenarios whose name contains `filter` (all without one).
pub fn select(filter: Option<&str>) -> Vec<Scenario> {
    Scenario::ALL
        .into_iter()
        .filter(|s| filter.is_none_or(|f| s.name().contains(f)))
        .collect()
}

/// Runs `scenarios` in order on `platform`, one summary row each. A failed
/// scenario leaves its diagnostics under `artefacts/<platform>/<n>/` and the
/// stack is brought back to full strength before the next one.
pub async fn run(
    platform: &mut dyn Platform,
    scenarios: &[Scenario],
    artefacts: &Path,
) -> Vec<Row> {
    let stack = Stack::of(platform);
    let mut rows = Vec::new();
    for &scenario in scenarios {
        let started = Instant::now();
        let outcome = match scenario.needs() {
            Some(component) if !platform.has(component) => {
                Outcome::Skipped(format!("no {component} in this stack"))
            }
            _ => match step(
                &format!("{} · {}", platform.name(), scenario.name()),
                scenario.run(platform, &stack),
            )
            .await
            {
                Ok(note) => Outcome::Passed(note),
                Err(e) => {
                    let dir = artefacts
                        .join(platform.name())
                        .join(scenario.name().split(' ').next().unwrap_or("x"));
                    if let Err(d) = platform.collect_diagnostics(&dir).await {
                        eprintln!("collecting diagnostics into {}: {d:#}", dir.display());
                    } else {
                        eprintln!("diagnostics: {}", dir.display());
                    }
                    recover(platform, &stack).await;
                    Outcome::Failed(format!("{e:#}"))
                }
            },
        };
        rows.push(Row {
            name: scenario.name().to_owned(),
            platform: platform.name(),
            outcome,
            elapsed: started.elapsed(),
        });
    }
    rows
}

/// Brings every component back after a failed scenario (errors are printed:
/// a component that is already running refuses to start twice).
async fn recover(platform: &mut dyn Platform, stack: &Stack) {
    for component in [Component::Postgres, Component::DataStorage] {
        if platform.has(component) {
            if let Err(e) = platform.start(component).await {
                eprintln!("recover: starting {component}: {e:#}");
            }
        }
    }
    if let Err(e) = platform.restart_gateway_with_data_storage_url(None).await {
        eprintln!("recover: restarting gateway: {e:#}");
    }
    if let Err(e) = stack
        .wait_ready("gateway", &stack.endpoints.gateway_health, TRAIL_TIMEOUT)
        .await
    {
        eprintln!("recover: {e:#}");
    }
}

/// Runs the scenarios on a stack and tears it down; a platform that fails to
/// come up is one failed row.
pub async fn run_on<P, F>(
    label: &str,
    up: F,
    scenarios: &[Scenario],
    artefacts: &Path,
    summary: &mut Summary,
) where
    P: Platform + 'static,
    F: std::future::Future<Output = anyhow::Result<P>>,
{
    let started = Instant::now();
    let mut platform: Box<dyn Platform> = match up.await {
        Ok(p) => Box::new(p),
        Err(e) => {
            summary.rows.push(Row {
                name: "stack up".into(),
                platform: label.to_owned(),
                outcome: Outcome::Failed(format!("{e:#}")),
                elapsed: started.elapsed(),
            });
            return;
        }
    };
    summary
        .rows
        .extend(run(platform.as_mut(), scenarios, artefacts).await);
    if let Err(e) = step(&format!("{label}: down"), platform.down()).await {
        summary.rows.push(Row {
            name: "stack down".into(),
            platform: label.to_owned(),
            outcome: Outcome::Failed(format!("{e:#}")),
            elapsed: Duration::ZERO,
        });
    }
}
