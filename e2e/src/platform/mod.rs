//! Where the stack runs: one [`Platform`] trait, two implementations.
//!
//! The scenario suite only talks to this trait, so the same scenarios prove the
//! pipeline as local processes (CI) and in a Kind cluster (`make e2e`). What
//! differs between the two — how a component is stopped, how a wrong
//! `data_storage_url` is injected, where logs come from — lives behind it.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use url::Url;

pub mod kind;
pub mod local;

/// The reference platform's real misconfiguration: a `data_storage_url` naming
/// a Service (`datastorage`) that does not exist, so the name never resolves.
pub const WRONG_DATA_STORAGE_URL: &str =
    "http://datastorage.kubernaut-system.svc.cluster.local:8080";

/// A run id for artefact directories: UTC time plus a short random suffix
/// (`20250101T120000Z-3f9a1c`), so directories sort by time and never collide.
pub fn run_id() -> String {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &suffix[suffix.len() - 6..]
    )
}

/// `<repo_root>/target/e2e/<run-id>/`: where a run keeps configuration, logs
/// and, on failure, diagnostics.
pub fn run_dir(repo_root: &Path) -> PathBuf {
    repo_root.join("target").join("e2e").join(run_id())
}

/// A part of the stack that scenarios stop, kill and start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The central audit store.
    DataStorage,
    /// The signal ingestion service.
    Gateway,
    /// DataStorage's database (absent when DataStorage runs on SQLite).
    Postgres,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DataStorage => "datastorage",
            Self::Gateway => "gateway",
            Self::Postgres => "postgresql",
        })
    }
}

/// Where the test process reaches the services (loopback ports or NodePorts).
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// DataStorage REST API (`/api/v1/audit/...`).
    pub data_storage_api: Url,
    /// DataStorage health port (`/readyz`, `/healthz`).
    pub data_storage_health: Url,
    /// Gateway API (`/api/v1/signals/...`).
    pub gateway_api: Url,
    /// Gateway health port.
    pub gateway_health: Url,
}

/// Bearer tokens of the two test callers of DataStorage.
#[derive(Clone)]
pub struct Tokens {
    /// May write events (`create`) and nothing else.
    pub writer: String,
    /// May query and read events (`list`, `get`) and nothing else.
    pub reader: String,
    /// May post signals to the Gateway.
    pub signal_sender: String,
}

impl fmt::Debug for Tokens {
    // Tokens never reach logs, not even test output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokens { writer: <redacted>, reader: <redacted>, signal_sender: <redacted> }")
    }
}

/// A running stack the scenarios drive.
///
/// Every method that changes the stack returns only once the change has taken
/// effect (a readiness signal, a process exit, a watch condition), never after a
/// fixed sleep.
#[async_trait]
pub trait Platform: Send + Sync {
    /// A short label for tables and artefact directories (`local-sqlite`, `kind`).
    fn name(&self) -> String;

    /// Where the services are reachable from this process.
    fn endpoints(&self) -> &Endpoints;

    /// The test callers' tokens.
    fn tokens(&self) -> &Tokens;

    /// Whether `component` exists in this stack (PostgreSQL may not).
    fn has(&self, component: Component) -> bool;

    /// Stops `component` gracefully (SIGTERM / scale to zero) and returns once
    /// it is gone.
    async fn stop(&mut self, component: Component) -> anyhow::Result<()>;

    /// Stops `component` abruptly (SIGKILL: the process, or the container on
    /// its Kind node) and returns once it is gone.
    async fn kill(&mut self, component: Component) -> anyhow::Result<()>;

    /// Starts `component` again and returns once it is ready (Gateway: live —
    /// its readiness depends on DataStorage, which a scenario may have broken).
    async fn start(&mut self, component: Component) -> anyhow::Result<()>;

    /// Restarts the Gateway with its audit store pointed at `url` (`None`: the
    /// correct DataStorage URL again), keeping its audit spool, and returns once
    /// it is live.
    async fn restart_gateway_with_data_storage_url(
        &mut self,
        url: Option<&str>,
    ) -> anyhow::Result<()>;

    /// A `data_storage_url` whose host does not resolve where the Gateway runs.
    fn unresolvable_data_storage_url(&self) -> String;

    /// The log lines of `component` since it was last started.
    async fn logs(&self, component: Component) -> anyhow::Result<String>;

    /// Writes everything useful for a post-mortem (logs, events, object YAML,
    /// configuration) under `dir`.
    async fn collect_diagnostics(&self, dir: &Path) -> anyhow::Result<()>;

    /// Tears the stack down (the Kind cluster is kept when asked to).
    async fn down(self: Box<Self>) -> anyhow::Result<()>;

    /// Kubernetes API requests per second the Gateway's remediation backend
    /// may send this platform's control plane; `None`: no Kubernetes API (the
    /// memory backend), load is not limited by one.
    fn kube_api_budget(&self) -> Option<u32> {
        None
    }

    /// Whether requests reach a component that reports not-Ready: local
    /// processes are reached directly; a Kubernetes Service routes only to
    /// Ready Pods, so a Gateway that is not Ready receives nothing there.
    fn routes_to_unready(&self) -> bool {
        true
    }

    /// Requests the API server has answered 429 (throttled) since it started;
    /// `None`: no API server.
    async fn api_throttled(&self) -> anyhow::Result<Option<u64>> {
        Ok(None)
    }
}
