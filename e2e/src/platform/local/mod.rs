//! The `local` platform: the real `datastorage` and `gateway` binaries as child
//! processes on free loopback ports, with generated configuration, static-token
//! auth, an audit spool directory, and DataStorage on SQLite or on a throwaway
//! PostgreSQL cluster started from the machine's own server binaries.

mod config;
mod process;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use datastorage::testing::pg::PgCluster;
use nix::sys::signal::Signal;

pub use self::config::Ports;
use self::config::Store;
use self::process::ServiceProcess;
use super::{Component, Endpoints, Platform, Tokens};
use crate::progress::step;

/// How long a service may take to become ready after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The environment variable that overrides the Gateway's `audit.data_storage_url`.
const GATEWAY_URL_ENV: &str = "GATEWAY_AUDIT__DATA_STORAGE_URL";

/// Which store DataStorage runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalBackend {
    /// An SQLite file in the run directory.
    Sqlite,
    /// A throwaway PostgreSQL cluster (initdb/pg_ctl in a temp dir).
    Postgres,
}

/// How to start a local stack.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// DataStorage's store.
    pub backend: LocalBackend,
    /// Where the `datastorage` and `gateway` binaries are.
    pub bin_dir: PathBuf,
    /// Configuration, logs, database and spool of this run.
    pub run_dir: PathBuf,
}

/// The directory holding the service binaries: `E2E_BIN_DIR`, else the cargo
/// target directory this executable runs from (`target/debug`, also for test
/// binaries in `target/debug/deps`).
pub fn default_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
        return Ok(dir.into());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut dir = exe.parent().context("executable without a directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().context("deps without a parent")?;
    }
    Ok(dir.to_owned())
}

/// A running local stack.
#[derive(Debug)]
pub struct LocalPlatform {
    label: String,
    run_dir: PathBuf,
    client: reqwest::Client,
    endpoints: Endpoints,
    tokens: Tokens,
    ds_health: String,
    gw_health: String,
    postgres: Option<Arc<PgCluster>>,
    data_storage: ServiceProcess,
    gateway: ServiceProcess,
}

fn binary(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} does not exist; build the services first: \
             `cargo build -p datastorage -p gateway` (or set E2E_BIN_DIR)",
            path.display()
        );
    }
    Ok(path)
}

fn loopback(port: u16) -> url::Url {
    url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("a valid URL")
}

impl LocalPlatform {
    /// Starts PostgreSQL (when asked), DataStorage and the Gateway, and returns
    /// once both services answer `/readyz`.
    pub async fn up(options: LocalOptions) -> anyhow::Result<Self> {
        let label = match options.backend {
            LocalBackend::Sqlite => "local-sqlite",
            LocalBackend::Postgres => "local-postgres",
        };
        let run_dir = options.run_dir.clone();
        let log_dir = run_dir.join("logs");
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let ds_binary = binary(&options.bin_dir, "datastorage")?;
        let gw_binary = binary(&options.bin_dir, "gateway")?;

        let postgres = match options.backend {
            LocalBackend::Sqlite => None,
            LocalBackend::Postgres => Some(Arc::new(
                step("starting a throwaway PostgreSQL cluster", async {
                    tokio::task::spawn_blocking(PgCluster::start)
                        .await?
                        .map_err(anyhow::Error::msg)
                })
                .await?,
            )),
        };
        let store = match &postgres {
            None => Store::Sqlite(run_dir.join("audit.db")),
            Some(pg) => Store::Postgres(pg.default_config()),
        };
        let (tokens, gateway_token) = config::new_tokens();
        let (ds_ports, gw_ports) = (Ports::free(), Ports::free());
        let data_storage_url = loopback(ds_ports.api).to_string();
        let ds_config =
            config::write_data_storage(&run_dir, ds_ports, &store, &tokens, &gateway_token)?;
        let gw_config = config::write_gateway(
            &run_dir,
            gw_ports,
            data_storage_url.trim_end_matches('/'),
            &tokens,
            &gateway_token,
        )?;

        let mut platform = Self {
            label: label.to_owned(),
            client: reqwest::Client::new(),
            endpoints: Endpoints {
                data_storage_api: loopback(ds_ports.api),
                data_storage_health: loopback(ds_ports.health),
                gateway_api: loopback(gw_ports.api),
                gateway_health: loopback(gw_ports.health),
            },
            tokens,
            ds_health: format!("http://127.0.0.1:{}", ds_ports.health),
            gw_health: format!("http://127.0.0.1:{}", gw_ports.health),
            postgres,
            data_storage: ServiceProcess::new("datastorage", ds_binary, ds_config, log_dir.clone()),
            gateway: ServiceProcess::new("gateway", gw_binary, gw_config, log_dir),
            run_dir,
        };
        step(
            "starting datastorage (waiting for /readyz)",
            platform.start_data_storage(),
        )
        .await?;
        step("starting gateway (waiting for /readyz)", async {
            platform.gateway.spawn()?;
            let url = format!("{}/readyz", platform.gw_health);
            platform
                .gateway
                .wait_for(&platform.client, &url, READY_TIMEOUT)
                .await
        })
        .await?;
        Ok(platform)
    }

    async fn start_data_storage(&mut self) -> anyhow::Result<()> {
        self.data_storage.spawn()?;
        let url = format!("{}/readyz", self.ds_health);
        self.data_storage
            .wait_for(&self.client, &url, READY_TIMEOUT)
            .await
    }

    /// The Gateway is live when `/healthz` answers; `/readyz` also needs DataStorage.
    async fn start_gateway(&mut self) -> anyhow::Result<()> {
        self.gateway.spawn()?;
        let url = format!("{}/healthz", self.gw_health);
        self.gateway
            .wait_for(&self.client, &url, READY_TIMEOUT)
            .await
    }

    fn postgres(&self) -> anyhow::Result<Arc<PgCluster>> {
        self.postgres
            .clone()
            .context("this local stack runs DataStorage on SQLite: there is no PostgreSQL")
    }

    async fn postgres_do(&self, what: fn(&PgCluster) -> Result<(), String>) -> anyhow::Result<()> {
        let pg = self.postgres()?;
        tokio::task::spawn_blocking(move || what(&pg))
            .await?
            .map_err(anyhow::Error::msg)
    }
}

#[async_trait]
impl Platform for LocalPlatform {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    fn has(&self, component: Component) -> bool {
        component != Component::Postgres || self.postgres.is_some()
    }

    async fn stop(&mut self, component: Component) -> anyhow::Result<()> {
        match component {
            Component::DataStorage => self.data_storage.signal_and_wait(Signal::SIGTERM).await,
            Component::Gateway => self.gateway.signal_and_wait(Signal::SIGTERM).await,
            // `pg_ctl stop -m fast -w`: connections are cut, it returns once down.
            Component::Postgres => self.postgres_do(PgCluster::stop).await,
        }
    }

    async fn kill(&mut self, component: Component) -> anyhow::Result<()> {
        match component {
            Component::DataStorage => self.data_storage.signal_and_wait(Signal::SIGKILL).await,
            Component::Gateway => self.gateway.signal_and_wait(Signal::SIGKILL).await,
            Component::Postgres => self.postgres_do(PgCluster::stop).await,
        }
    }

    async fn start(&mut self, component: Component) -> anyhow::Result<()> {
        match component {
            Component::DataStorage => self.start_data_storage().await,
            Component::Gateway => self.start_gateway().await,
            // `pg_ctl start -w`: returns once the server accepts connections.
            Component::Postgres => self.postgres_do(PgCluster::restart).await,
        }
    }

    async fn restart_gateway_with_data_storage_url(
        &mut self,
        url: Option<&str>,
    ) -> anyhow::Result<()> {
        self.gateway.signal_and_wait(Signal::SIGTERM).await?;
        self.gateway.set_env(
            url.map(|u| vec![(GATEWAY_URL_ENV.to_owned(), u.to_owned())])
                .unwrap_or_default(),
        );
        self.start_gateway().await
    }

    fn unresolvable_data_storage_url(&self) -> String {
        super::WRONG_DATA_STORAGE_URL.to_owned()
    }

    async fn logs(&self, component: Component) -> anyhow::Result<String> {
        let file = match component {
            Component::DataStorage => self.data_storage.log_file(),
            Component::Gateway => self.gateway.log_file(),
            Component::Postgres => bail!("the PostgreSQL log is kept by the cluster helper"),
        };
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))
    }

    async fn collect_diagnostics(&self, dir: &Path) -> anyhow::Result<()> {
        // Logs and configuration already live in the run directory; copy the
        // logs next to the other artefacts (tokens files stay where they are).
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(self.run_dir.join("logs"))? {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, dir.join(name))?;
            }
        }
        for config in ["datastorage.yaml", "gateway.yaml"] {
            let from = self.run_dir.join(config);
            if from.exists() {
                std::fs::copy(&from, dir.join(config))?;
            }
        }
        Ok(())
    }

    async fn down(mut self: Box<Self>) -> anyhow::Result<()> {
        let gateway = self.gateway.signal_and_wait(Signal::SIGTERM).await;
        let data_storage = self.data_storage.signal_and_wait(Signal::SIGTERM).await;
        // Dropping the cluster stops PostgreSQL and removes its directory.
        drop(self.postgres.take());
        gateway.and(data_storage)
    }
}
