//! The three listeners of a service (API, health, metrics), served until a
//! stop signal and then drained in the order [`crate::shutdown`] describes.
//!
//! With `server.tls` the API port serves https ([`crate::tls`]); health and
//! metrics stay plain HTTP, for kubelet probes and scrapers inside the Pod's
//! network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;
use crate::tls::{ReloadingCert, TlsConfig, TlsError, TlsListener};

/// Bound, not yet serving, listeners (port 0 picks a free port).
#[derive(Debug)]
pub struct Listeners {
    api: TcpListener,
    health: TcpListener,
    metrics: TcpListener,
    api_tls: Option<ApiTls>,
}

/// TLS of the API listener.
struct ApiTls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    cert: Arc<ReloadingCert>,
    /// Stops the certificate watcher with the listeners.
    _watch: tokio_util::sync::DropGuard,
}

impl std::fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTls").field("cert", &self.cert).finish()
    }
}

/// The three routers to serve.
#[derive(Debug)]
pub struct Routers {
    pub api: Router,
    pub health: Router,
    pub metrics: Router,
}

/// Shutdown timing.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    /// How long `/readyz` answers 503 before listeners stop accepting.
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take after that.
    pub drain_timeout: Duration,
}

impl Listeners {
    /// Binds the three ports on `host`.
    pub async fn bind(host: IpAddr, api: u16, health: u16, metrics: u16) -> anyhow::Result<Self> {
        let health = bind(host, health, "health").await?;
        Self::bind_with_health(host, api, health, metrics).await
    }

    /// Binds the API and metrics ports next to an already bound health
    /// listener (see [`crate::early_health`]).
    pub async fn bind_with_health(
        host: IpAddr,
        api: u16,
        health: TcpListener,
        metrics: u16,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            api: bind(host, api, "API").await?,
            health,
            metrics: bind(host, metrics, "metrics").await?,
            api_tls: None,
        })
    }

    /// Serves the API port over TLS when `tls` configures it: loads the
    /// certificate now (a bad pair is an error at start-up) and re-reads it
    /// every `tls.reload_interval` while the listeners live.
    pub fn with_tls(mut self, tls: &TlsConfig) -> Result<Self, TlsError> {
        let stop = CancellationToken::new();
        if let Some((acceptor, cert)) = crate::tls::acceptor(tls, stop.clone())? {
            self.api_tls = Some(ApiTls {
                acceptor,
                handshake_timeout: tls.handshake_timeout,
                cert,
                _watch: stop.drop_guard(),
            });
        }
        Ok(self)
    }

    /// `https` when the API port serves TLS, else `http`.
    pub fn api_scheme(&self) -> &'static str {
        if self.api_tls.is_some() {
            "https"
        } else {
            "http"
        }
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

    /// Serves `routers` and marks the service ready; when `stop` is cancelled,
    /// turns readiness to draining, waits `shutdown_delay`, stops accepting and
    /// gives in-flight requests `drain_timeout`. Returns when drained.
    pub async fn serve_until(
        self,
        routers: Routers,
        readiness: &Readiness,
        stop: CancellationToken,
        drain: Drain,
        name: &'static str,
    ) {
        let (api_addr, health_addr, metrics_addr) =
            (self.api_addr(), self.health_addr(), self.metrics_addr());
        // Listeners stop accepting when this is cancelled, after the delay.
        let close = CancellationToken::new();
        let scheme = self.api_scheme();
        let api = match self.api_tls {
            Some(tls) => {
                let listener = match TlsListener::new(self.api, tls.acceptor, tls.handshake_timeout)
                {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serve TLS on the API listener");
                        return;
                    }
                };
                let server = spawn_on(listener, routers.api, close.clone());
                // The watcher lives as long as the API server.
                let watch = tls._watch;
                tokio::spawn(async move {
                    let outcome = server.await;
                    drop(watch);
                    outcome.unwrap_or_else(|e| Err(std::io::Error::other(e)))
                })
            }
            None => spawn(self.api, routers.api, close.clone()),
        };
        let servers = [
            api,
            spawn(self.health, routers.health, close.clone()),
            spawn(self.metrics, routers.metrics, close.clone()),
        ];
        readiness.set_ready();
        tracing::info!(%api_addr, api_scheme = scheme, %health_addr, %metrics_addr, "{name} ready");

        stop.cancelled().await;
        readiness.set_draining();
        tracing::info!(delay = ?drain.shutdown_delay, "readiness is now 503; waiting before closing listeners");
        tokio::time::sleep(drain.shutdown_delay).await;
        close.cancel();
        if tokio::time::timeout(drain.drain_timeout, join(servers))
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?drain.drain_timeout, "in-flight requests did not finish in time");
        }
    }
}

async fn bind(host: IpAddr, port: u16, what: &'static str) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}

fn spawn(
    listener: TcpListener,
    router: Router,
    close: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    // Without TCP_NODELAY, HTTP/2 (gRPC) answers written as several small
    // frames wait on Nagle and the peer's delayed ACK (~40 ms each).
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
}

fn spawn_on<L>(
    listener: L,
    router: Router,
    close: CancellationToken,
) -> JoinHandle<std::io::Result<()>>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(close.cancelled_owned())
            .await
    })
}

async fn join(handles: [JoinHandle<std::io::Result<()>>; 3]) {
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "listener failed"),
            Err(e) => tracing::error!(error = %e, "listener task panicked"),
        }
    }
}
