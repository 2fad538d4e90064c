//! Builds the Gateway from its configuration and runs it until stopped.
//!
//! `Application::build` starts the audit store, picks the remediation backend
//! and binds every listener (port 0 picks a free port, which is how tests run
//! many instances side by side), so a caller knows the addresses before serving.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use audit_sdk::AuditStore;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::audit::GatewayAudit;
use crate::config::{BackendKind, Config};
use crate::domain::intake::Intake;
use crate::readiness::Lifecycle;
use crate::remediation::kubernetes::KubernetesBackend;
use crate::remediation::memory::MemoryBackend;
use crate::remediation::RemediationBackend;
use crate::telemetry;

/// A built, not yet serving, Gateway.
#[derive(Debug)]
pub struct Application {
    config: Config,
    state: AppState,
    api: TcpListener,
    health: TcpListener,
    metrics: TcpListener,
}

impl Application {
    /// Builds with the backend the configuration selects.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let backend = open_backend(&config).await?;
        Self::build_with_backend(config, backend).await
    }

    /// Builds around a given backend (tests keep a handle on it to look inside).
    pub async fn build_with_backend(
        config: Config,
        backend: Arc<dyn RemediationBackend>,
    ) -> anyhow::Result<Self> {
        let store = AuditStore::new(config.audit.clone()).context("starting the audit store")?;
        tracing::info!(backend = backend.name(), data_storage_url = %config.audit.data_storage_url, "gateway configured");
        let auth = auth::Auth::new(&config.auth, audit_sdk::names::GATEWAY_SERVICE)
            .await
            .context("configuring auth")?;
        let state = AppState {
            auth,
            intake: Intake::new(backend, GatewayAudit::new(store), config.cluster.clone()),
            lifecycle: Lifecycle::default(),
            limits: config.limits.clone(),
            request_timeout: config.server.request_timeout,
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

    /// The audit store (tests flush it to know every event reached DataStorage).
    pub fn audit_store(&self) -> AuditStore {
        self.state.intake.audit().store().clone()
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
        let lifecycle = state.lifecycle.clone();
        let audit = state.intake.audit().store().clone();
        // Listeners stop accepting when this is cancelled, after the delay.
        let close = CancellationToken::new();
        let serve = |listener: TcpListener, router: axum::Router| {
            let close = close.clone();
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
        lifecycle.set_ready();
        tracing::info!(%api_addr, %health_addr, %metrics_addr, "gateway serving");

        stop.cancelled().await;
        lifecycle.set_draining();
        tracing::info!(delay = ?config.server.shutdown_delay, "readiness is now 503; waiting before closing listeners");
        tokio::time::sleep(config.server.shutdown_delay).await;
        close.cancel();
        let drained = tokio::time::timeout(config.server.drain_timeout, join_all(servers)).await;
        if drained.is_err() {
            tracing::warn!(timeout = ?config.server.drain_timeout, "in-flight requests did not finish in time");
        }
        let report = audit.close().await;
        tracing::info!(?report, "audit store closed; gateway stopped");
        Ok(())
    }
}

async fn join_all(handles: [tokio::task::JoinHandle<std::io::Result<()>>; 3]) {
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "listener failed"),
            Err(e) => tracing::error!(error = %e, "listener task panicked"),
        }
    }
}

/// The backend `remediation.backend` selects; `auto` is `kubernetes` inside a
/// Pod and `memory` elsewhere.
pub async fn open_backend(config: &Config) -> anyhow::Result<Arc<dyn RemediationBackend>> {
    let memory = || -> Arc<dyn RemediationBackend> {
        Arc::new(MemoryBackend::new(config.remediation.memory.active_for))
    };
    let kube_config = match config.remediation.backend {
        BackendKind::Memory => return Ok(memory()),
        BackendKind::Auto => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => {
                tracing::info!("not running in a Pod: remediation backend `auto` is `memory`");
                return Ok(memory());
            }
        },
        // Explicitly asked for. In a Pod only its own ServiceAccount: a
        // KUBECONFIG leaking into a Pod (a host path, say) must not be used.
        // Outside a Pod, the operator's kubeconfig (a dev cluster).
        BackendKind::Kubernetes if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            kube::Config::incluster().context(
                "remediation.backend is kubernetes but the Pod's ServiceAccount credentials \
                 are unusable; check the token mount at /var/run/secrets/kubernetes.io/serviceaccount",
            )?
        }
        BackendKind::Kubernetes => kube::Config::infer()
            .await
            .context("remediation.backend is kubernetes but no kubeconfig was found")?,
    };
    let client = kube::Client::try_from(kube_config).context("building the Kubernetes client")?;
    Ok(Arc::new(KubernetesBackend::new(
        client,
        &config.remediation.kubernetes,
        holder_identity(),
    )))
}

/// This replica's identity in Leases: the Pod name when known.
fn holder_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("gateway-{}", std::process::id()))
}
