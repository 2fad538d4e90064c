//! Builds the application from its configuration and runs it until stopped.
//!
//! `Application::build` binds the health listener first (alive, not ready: the
//! kubelet must not restart a process that waits for PostgreSQL), then opens
//! the store and binds the other listeners (port 0 picks a free port, which is
//! how tests run many instances side by side), so a caller knows the addresses
//! before serving starts.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use service_kit::early_health::EarlyHealth;
use service_kit::listeners::{Drain, Listeners, Routers};
use service_kit::readiness::Readiness;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::checkpointer::{self, CountingStore, EventCounter};
use crate::config::{Backend, Config};
use crate::domain::chain::ChainHasher;
use crate::domain::checkpoint::CheckpointKeys;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::EventStore;
use crate::telemetry;

/// A built, not yet serving, DataStorage.
#[derive(Debug)]
pub struct Application {
    config: Config,
    state: AppState,
    listeners: Listeners,
    checkpoints: (CheckpointKeys, Arc<EventCounter>),
}

impl Application {
    /// Binds the health listener, opens the store (running migrations) and
    /// binds the other two listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let server = &config.server;
        let health = EarlyHealth::bind(server.host, server.health_port, "store").await?;
        let hasher = chain_hasher(&config.chain)?;
        let keys = checkpoint_keys(&config.chain, hasher.clone())?;
        let counter = Arc::new(EventCounter::new(config.chain.checkpoint_every_events));
        let store: Arc<dyn EventStore> = Arc::new(CountingStore::new(
            open_store(&config, hasher.clone()).await?,
            counter.clone(),
        ));
        let auth = auth::Auth::new(&config.auth, audit_sdk::names::DATA_STORAGE_SERVICE)
            .await
            .context("configuring auth")?;
        let state = AppState {
            auth,
            memory: api::memory_budget::MemoryBudget::new(config.limits.ingest_memory_bytes),
            store,
            limits: config.limits.clone(),
            hasher,
            chain: config.chain.clone(),
            keys: keys.clone(),
            readiness: Readiness::default(),
        };
        let server = &config.server;
        let listeners = Listeners::bind_with_health(
            server.host,
            server.api_port,
            health.into_listener().await?,
            server.metrics_port,
        )
        .await?
        .with_tls(&server.tls)
        .context("server.tls")?;
        Ok(Self {
            config,
            state,
            listeners,
            checkpoints: (keys, counter),
        })
    }

    /// Address of the API listener.
    pub fn api_addr(&self) -> SocketAddr {
        self.listeners.api_addr()
    }

    /// Address of the health listener.
    pub fn health_addr(&self) -> SocketAddr {
        self.listeners.health_addr()
    }

    /// Address of the metrics listener.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.listeners.metrics_addr()
    }

    /// Serves until `stop` is cancelled, then shuts down gracefully (see
    /// [`service_kit::shutdown`]) and closes the store.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let Self {
            config,
            state,
            listeners,
            checkpoints: (keys, counter),
        } = self;
        let stop_checkpoints = CancellationToken::new();
        let checkpointer = tokio::spawn(checkpointer::run(
            state.store.clone(),
            keys,
            counter,
            config.chain.checkpoint_interval,
            stop_checkpoints.clone(),
        ));
        let routers = Routers {
            api: api::api_router(state.clone()),
            health: api::health_router(state.clone()),
            metrics: api::metrics_router(telemetry::metrics_handle()),
        };
        let drain = Drain {
            shutdown_delay: config.server.shutdown_delay,
            drain_timeout: config.server.drain_timeout,
        };
        listeners
            .serve_until(routers, &state.readiness, stop, drain, "datastorage")
            .await;
        stop_checkpoints.cancel();
        let _ = checkpointer.await;
        state.store.close().await;
        tracing::info!("datastorage stopped");
        Ok(())
    }
}

/// The chain hasher of `chain`: its signing key and its verify-only keys.
pub fn chain_hasher(chain: &crate::config::ChainConfig) -> anyhow::Result<ChainHasher> {
    let mut hasher = match &chain.hmac_key_file {
        Some(path) => ChainHasher::from_key_file(path)
            .with_context(|| format!("reading chain.hmac_key_file {}", path.display()))?,
        None => ChainHasher::sha256(),
    };
    for path in &chain.verify_only_key_files {
        hasher = hasher
            .with_verify_only_file(path)
            .with_context(|| format!("reading chain.verify_only_key_files {}", path.display()))?;
    }
    Ok(hasher)
}

/// The checkpoint keys of `chain`: the Ed25519 signing key when configured,
/// the accepted public keys, and the chain's HMAC keys.
pub fn checkpoint_keys(
    chain: &crate::config::ChainConfig,
    hasher: ChainHasher,
) -> anyhow::Result<CheckpointKeys> {
    let mut keys = CheckpointKeys::new(hasher);
    if let Some(path) = &chain.checkpoint_signing_key_file {
        keys = keys.with_signing_key_file(path).map_err(|e| {
            anyhow::anyhow!(
                "reading chain.checkpoint_signing_key_file {}: {e}",
                path.display()
            )
        })?;
    }
    for path in &chain.checkpoint_public_key_files {
        keys = keys.with_public_key_file(path).map_err(|e| {
            anyhow::anyhow!(
                "reading chain.checkpoint_public_key_files {}: {e}",
                path.display()
            )
        })?;
    }
    Ok(keys)
}

/// Opens the configured backend.
pub async fn open_store(
    config: &Config,
    hasher: ChainHasher,
) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match config.store.backend {
        Backend::Sqlite => Arc::new(
            SqliteStore::open(&config.store.sqlite, hasher)
                .await
                .context("opening the SQLite store")?,
        ),
        Backend::Postgres => Arc::new(
            PostgresStore::open(&config.store.postgres, hasher)
                .await
                .with_context(|| {
                    let pg = &config.store.postgres;
                    format!("opening the PostgreSQL store at {}:{}", pg.host, pg.port)
                })?,
        ),
    })
}
