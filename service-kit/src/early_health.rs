//! The health listener, bound and answering before the rest of a service has
//! started.
//!
//! DataStorage waits up to `startup_timeout` for PostgreSQL before it can
//! serve. If nothing listened meanwhile, the kubelet's probes would see a dead
//! process and restart it, so a PostgreSQL outage would become a crash loop.
//! [`EarlyHealth`] binds the health port first and answers `/healthz` 200
//! (alive) and `/readyz` 503 (`starting`, with what it waits for); once the
//! service is built, [`EarlyHealth::into_listener`] hands the same socket to
//! [`crate::listeners::Listeners`], so the port is never closed in between
//! (connections arriving during the hand-over wait in the backlog).

use std::future::IntoFuture;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long in-flight probe requests may take when the early server hands over.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(2);

/// The bound health port, answering "alive, not ready" until handed over.
#[derive(Debug)]
pub struct EarlyHealth {
    /// The socket itself; the early server serves a duplicate of it.
    listener: std::net::TcpListener,
    addr: SocketAddr,
    stop: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

#[derive(Serialize)]
struct Alive {
    status: &'static str,
}

#[derive(Serialize)]
struct Starting {
    status: &'static str,
    waiting_for: &'static str,
}

impl EarlyHealth {
    /// Binds `host:port` and starts answering; `waiting_for` names what the
    /// service waits for (shown in `/readyz`'s body).
    pub async fn bind(host: IpAddr, port: u16, waiting_for: &'static str) -> anyhow::Result<Self> {
        let addr = SocketAddr::new(host, port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the health listener on {addr}"))?
            .into_std()?;
        let addr = listener.local_addr()?;
        let served = TcpListener::from_std(listener.try_clone()?)?;
        let router = Router::new()
            .route("/healthz", get(|| async { Json(Alive { status: "ok" }) }))
            .route(
                "/readyz",
                get(move || async move {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(Starting {
                            status: "starting",
                            waiting_for,
                        }),
                    )
                }),
            );
        let stop = CancellationToken::new();
        let server = tokio::spawn(
            axum::serve(served, router)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        tracing::info!(health_addr = %addr, waiting_for, "alive, not ready: waiting before serving");
        Ok(Self {
            listener,
            addr,
            stop,
            server: Some(server),
        })
    }

    /// Address of the health listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the early answers and returns the socket for the real health router.
    pub async fn into_listener(mut self) -> anyhow::Result<TcpListener> {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(HAND_OVER_TIMEOUT, server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let listener = self.listener.try_clone()?;
        Ok(TcpListener::from_std(listener)?)
    }
}

impl Drop for EarlyHealth {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
