//! Test support: a real DataStorage on loopback (in-process or as a process),
//! and helpers to count what it stored.
#![allow(dead_code)] // each test binary uses a different subset

pub mod logs;
pub mod stub;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use audit_sdk::{AuditConfig, AuditEvent};
use datastorage::config::Config;
use datastorage::startup::Application;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)] // not every test binary starts servers
pub use datastorage::testing::ports::free_port;

/// A DataStorage running inside the test process.
pub struct Server {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn server_config(db: &Path, api_port: u16) -> Config {
    let mut config = Config::default();
    config.server.host = [127, 0, 0, 1].into();
    config.server.api_port = api_port;
    config.server.health_port = 0;
    config.server.metrics_port = 0;
    config.server.shutdown_delay = Duration::ZERO;
    config.store.sqlite.path = db.to_owned();
    config
}

/// Starts DataStorage on `api_port` (0: any) with its database at `db`.
pub async fn start_server(db: &Path, api_port: u16) -> Server {
    let app = Application::build(server_config(db, api_port))
        .await
        .unwrap();
    let addr = app.api_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Server { addr, stop, task }
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A DataStorage binary running as a child process (for SIGKILL tests).
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub port: u16,
}

pub async fn start_process(db: &Path, port: u16) -> ServerProcess {
    let child = tokio::process::Command::new(datastorage_binary())
        .env("DATASTORAGE_SERVER__HOST", "127.0.0.1")
        .env("DATASTORAGE_SERVER__API_PORT", port.to_string())
        .env("DATASTORAGE_SERVER__HEALTH_PORT", free_port().to_string())
        .env("DATASTORAGE_SERVER__METRICS_PORT", free_port().to_string())
        .env("DATASTORAGE_SERVER__SHUTDOWN_DELAY", "0s")
        .env("DATASTORAGE_STORE__SQLITE__PATH", db)
        .env("DATASTORAGE_LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start datastorage");
    let server = ServerProcess { child, port };
    wait_ready(&format!("http://127.0.0.1:{port}")).await;
    server
}

/// The datastorage binary, built by cargo next to this test binary.
fn datastorage_binary() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("datastorage");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p datastorage` first (make test does)",
        bin.display()
    );
    bin
}

/// Polls `/readyz` (the readiness signal) until 200, for at most 30 s.
pub async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(format!("{base}/readyz")).send().await {
            if resp.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{base} not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A fast-retrying SDK configuration for tests.
pub fn sdk_config(url: &str) -> AuditConfig {
    let mut c = AuditConfig::new(url);
    c.flush_interval = Duration::from_millis(50);
    c.retry_min_delay = Duration::from_millis(20);
    c.retry_max_delay = Duration::from_millis(500);
    c.probe_interval = Duration::from_millis(200);
    c.request_timeout = Duration::from_secs(5);
    c
}

pub fn event(correlation_id: &str, n: usize) -> AuditEvent {
    AuditEvent::builder("gateway.signal.received", correlation_id)
        .category("gateway")
        .action("received")
        .actor("service", "gateway")
        .resource("Deployment", format!("payments/api-{n}"))
        .data("n", n)
        .build()
}

/// Every stored event id of `correlation_id`, following cursors.
pub async fn stored_ids(base: &str, correlation_id: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url =
            format!("{base}/api/v1/audit/events?limit=1000&correlation_id={correlation_id}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        for e in page["data"].as_array().unwrap() {
            ids.push(e["event_id"].as_str().unwrap().to_owned());
        }
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

/// Asserts that exactly `expected` (by id) are stored, each once.
pub async fn assert_stored_exactly(base: &str, correlation_id: &str, expected: &[uuid::Uuid]) {
    let stored = stored_ids(base, correlation_id).await;
    let mut unique = stored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), stored.len(), "duplicates stored");
    let mut want: Vec<String> = expected.iter().map(ToString::to_string).collect();
    want.sort();
    assert_eq!(unique, want, "stored set differs from recorded set");
}
