//! Builds the Gateway from its configuration and runs it until stopped.
//!
//! `Application::build` starts the audit store, picks the remediation backend
//! and binds every listener (port 0 picks a free port, which is how tests run
//! many instances side by side), so a caller knows the addresses before serving.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use audit_sdk::AuditStore;
use service_kit::listeners::{Drain, Listeners, Routers};
use service_kit::readiness::Readiness;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::audit::GatewayAudit;
use crate::config::{BackendKind, Config};
use crate::domain::intake::Intake;
use crate::remediation::kubernetes::{client_config, KubernetesBackend};
use crate::remediation::memory::MemoryBackend;
use crate::remediation::RemediationBackend;
use crate::telemetry;

/// A built, not yet serving, Gateway.
#[derive(Debug)]
pub struct Application {
    config: Config,
    state: AppState,
    listeners: Listeners,
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
        config
            .check()
            .map_err(anyhow::Error::msg)
            .context("invalid configuration")?;
        let store = AuditStore::new(config.audit.clone()).context("starting the audit store")?;
        tracing::info!(backend = backend.name(), data_storage_url = %config.audit.data_storage_url, "gateway configured");
        let auth = auth::Auth::new(&config.auth, audit_sdk::names::GATEWAY_SERVICE)
            .await
            .context("configuring auth")?;
        let state = AppState {
            auth,
            intake: Intake::new(backend, GatewayAudit::new(store), config.cluster.clone())
                .with_cluster_label(config.signals.cluster_label.clone())
                .with_request_namespace(config.remediation.kubernetes.namespace.clone()),
            lifecycle: Readiness::default(),
            limits: config.limits.clone(),
            signals: config.signals.clone(),
            request_timeout: config.server.request_timeout,
        };
        let server = &config.server;
        let listeners = Listeners::bind(
            server.host,
            server.api_port,
            server.health_port,
            server.metrics_port,
        )
        .await?
        .with_tls(&server.tls)
        .context("server.tls")?;
        Ok(Self {
            config,
            state,
            listeners,
        })
    }

    /// The audit store (tests flush it to know every event reached DataStorage).
    pub fn audit_store(&self) -> AuditStore {
        self.state.intake.audit().store().clone()
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
    /// [`service_kit::shutdown`]) and closes the audit store, so every recorded
    /// event is delivered or spooled (the report is logged).
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let Self {
            config,
            state,
            listeners,
        } = self;
        let audit = state.intake.audit().store().clone();
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
            .serve_until(routers, &state.lifecycle, stop, drain, "gateway")
            .await;
        let report = audit.close().await;
        tracing::info!(?report, "audit store closed; gateway stopped");
        Ok(())
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
    let kube_config = client_config(kube_config, &config.remediation.kubernetes);
    let client = kube::Client::try_from(kube_config).context("building the Kubernetes client")?;
    Ok(Arc::new(KubernetesBackend::new(
        client,
        &config.remediation.kubernetes,
        holder_identity(),
    )))
}

/// This replica's identity in the requests it creates: the Pod name when known.
fn holder_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("gateway-{}", std::process::id()))
}
