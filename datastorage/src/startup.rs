//! Builds the application from its configuration and runs it until stopped.
//!
//! `Application::build` opens the store and binds every listener (port 0 picks a
//! free port, which is how tests run many instances side by side), so a caller
//! knows the addresses before serving starts.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::{Backend, Config};
use crate::domain::chain::ChainHasher;
use crate::readiness::Readiness;
use crate::store::sqlite::SqliteStore;
use crate::store::EventStore;
use crate::telemetry;

/// A built, not yet serving, DataStorage.
#[derive(Debug)]
pub struct Application {
    config: Config,
    state: AppState,
    api: TcpListener,
    health: TcpListener,
    metrics: TcpListener,
}

impl Application {
    /// Opens the store (running migrations) and binds the three listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let hasher = match &config.chain.hmac_key_file {
            Some(path) => ChainHasher::from_key_file(path)
                .with_context(|| format!("reading chain.hmac_key_file {}", path.display()))?,
            None => ChainHasher::sha256(),
        };
        let store = open_store(&config, hasher.clone()).await?;
        let auth = auth::Auth::new(&config.auth, audit_sdk::names::DATA_STORAGE_SERVICE)
            .await
            .context("configuring auth")?;
        let state = AppState {
            auth,
            store,
            limits: config.limits.clone(),
            hasher,
            readiness: Readiness::default(),
        };
        let host = config.server.host;
        let bind = |port: u16, what: &'static str| async move {
            let addr = SocketAddr::new(host, port);
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the {what} listener on {addr}"))
        };
        Ok(Self {
            api: bind(config.server.api_port, "API").await?,
            health: bind(config.server.health_port, "health").await?,
            metrics: bind(config.server.metrics_port, "metrics").await?,
            config,
            state,
        })
    }

    /// Address of the API listener.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Address of the health listener.
    pub fn health_addr(&self) -> SocketAddr {
        self.health
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Address of the metrics listener.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `stop` is cancelled, then shuts down gracefully (see
    /// [`crate::shutdown`]).
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let Self {
            config,
            state,
            api,
            health,
            metrics,
        } = self;
        let (api_addr, health_addr, metrics_addr) = (
            api.local_addr()?,
            health.local_addr()?,
            metrics.local_addr()?,
        );
        let readiness = state.readiness.clone();
        let store = state.store.clone();
        // Listeners stop accepting when this is cancelled, after the delay.
        let close = CancellationToken::new();
        let serve = |listener: TcpListener, router: axum::Router| {
            let close = close.clone();
            // Without TCP_NODELAY, HTTP/2 (gRPC) answers written as several
            // small frames wait on Nagle and the peer's delayed ACK (~40 ms each).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(close.cancelled_owned())
                    .await
            })
        };
        let servers = [
            serve(api, api::api_router(state.clone())),
            serve(health, api::health_router(state.clone())),
            serve(metrics, api::metrics_router(telemetry::metrics_handle())),
        ];
        readiness.set_ready();
        tracing::info!(%api_addr, %health_addr, %metrics_addr, "datastorage ready");

        stop.cancelled().await;
        readiness.set_draining();
        tracing::info!(delay = ?config.server.shutdown_delay, "readiness is now 503; waiting before closing listeners");
        tokio::time::sleep(config.server.shutdown_delay).await;
        close.cancel();
        let drained =
            tokio::time::timeout(config.server.drain_timeout, futures_join_all(servers)).await;
        if drained.is_err() {
            tracing::warn!(timeout = ?config.server.drain_timeout, "in-flight requests did not finish in time");
        }
        store.close().await;
        tracing::info!("datastorage stopped");
        Ok(())
    }
}

async fn futures_join_all(handles: [tokio::task::JoinHandle<std::io::Result<()>>; 3]) {
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "listener failed"),
            Err(e) => tracing::error!(error = %e, "listener task panicked"),
        }
    }
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
    })
}
