//! The whole run: which stacks to bring up for a platform, the scenarios on
//! each, and one summary. Shared by the `scenarios` test target (`make test`)
//! and `e2e test`.

use std::path::Path;
use std::str::FromStr;

use crate::platform::kind::{self, KindOptions, KindPlatform};
use crate::platform::local::{default_bin_dir, LocalBackend, LocalOptions, LocalPlatform};
use crate::scenarios::{self, Scenario};
use crate::summary::{Outcome, Row, Summary};

/// Where the stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PlatformChoice {
    /// The service binaries as local processes (SQLite and PostgreSQL stacks).
    #[default]
    Local,
    /// A Kind cluster (needs docker, kind and kubectl).
    Kind,
}

impl FromStr for PlatformChoice {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "local" => Ok(Self::Local),
            "kind" => Ok(Self::Kind),
            other => anyhow::bail!("unknown platform {other:?}: expected local or kind"),
        }
    }
}

impl PlatformChoice {
    /// `E2E_PLATFORM`, `local` when unset.
    pub fn from_env() -> anyhow::Result<Self> {
        std::env::var("E2E_PLATFORM").map_or(Ok(Self::Local), |v| v.parse())
    }
}

/// Runs `scenarios` on every stack of `platform`; the summary has one row per
/// scenario and stack.
pub async fn run(platform: PlatformChoice, scenarios: &[Scenario], run_dir: &Path) -> Summary {
    let mut summary = Summary::default();
    match platform {
        PlatformChoice::Local => run_local(scenarios, run_dir, &mut summary).await,
        PlatformChoice::Kind => run_kind(scenarios, run_dir, &mut summary).await,
    }
    summary
}

async fn run_local(scenarios: &[Scenario], run_dir: &Path, summary: &mut Summary) {
    let bin_dir = match default_bin_dir() {
        Ok(dir) => dir,
        Err(e) => {
            summary.rows.push(Row {
                name: "locate binaries".into(),
                platform: "local".into(),
                outcome: Outcome::Failed(format!("{e:#}")),
                elapsed: Default::default(),
            });
            return;
        }
    };
    for backend in [LocalBackend::Sqlite, LocalBackend::Postgres] {
        let label = match backend {
            LocalBackend::Sqlite => "local-sqlite",
            LocalBackend::Postgres => "local-postgres",
        };
        if backend == LocalBackend::Postgres && !postgres_available(summary, label) {
            continue;
        }
        let options = LocalOptions {
            backend,
            bin_dir: bin_dir.clone(),
            run_dir: run_dir.join(label),
        };
        scenarios::run_on(
            label,
            LocalPlatform::up(options),
            scenarios,
            &run_dir.join("failures"),
            summary,
        )
        .await;
    }
}

/// Whether the PostgreSQL server binaries exist. Without them the PostgreSQL
/// stack is skipped with the reason — except in CI (`CI` set), where it must
/// run, so its start is attempted and fails loudly.
fn postgres_available(summary: &mut Summary, label: &str) -> bool {
    if datastorage::testing::pg::find_bindir().is_some() || std::env::var_os("CI").is_some() {
        return true;
    }
    summary.rows.push(Row {
        name: "all scenarios".into(),
        platform: label.to_owned(),
        outcome: Outcome::Skipped(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL to run this stack"
                .into(),
        ),
        elapsed: Default::default(),
    });
    false
}

async fn run_kind(scenarios: &[Scenario], run_dir: &Path, summary: &mut Summary) {
    if let Err(e) = kind::check_prerequisites() {
        summary.rows.push(Row {
            name: "prerequisites".into(),
            platform: "kind".into(),
            outcome: Outcome::Failed(format!("{e:#}")),
            elapsed: Default::default(),
        });
        return;
    }
    let mut options = KindOptions::from_env(crate::preflight::repo_root());
    options.artefact_dir = run_dir.to_owned();
    scenarios::run_on(
        "kind",
        KindPlatform::up(options),
        scenarios,
        &run_dir.join("failures"),
        summary,
    )
    .await;
}
