//! Test support: a real DataStorage and a Gateway (memory backend) on loopback,
//! in this process, plus fixtures and audit-trail queries.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_sdk::{AuditConfig, AuditStore};
use gateway::config::{BackendKind, Config};
use gateway::remediation::memory::MemoryBackend;
use gateway::remediation::RemediationBackend;
use gateway::startup::Application;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub mod flaky_backend;
pub mod kube_replica;
pub mod refusing_backend;

#[allow(unused_imports)] // not every test binary starts servers
pub use datastorage::testing::ports::free_port;

/// A DataStorage running inside the test process.
pub struct DataStorage {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts DataStorage on `api_port` (0: any) with its database at `db`.
pub async fn start_datastorage(db: &Path, api_port: u16) -> DataStorage {
    let mut config = datastorage::config::Config::default();
    config.server.host = [127, 0, 0, 1].into();
    config.server.api_port = api_port;
    config.server.health_port = 0;
    config.server.metrics_port = 0;
    config.server.shutdown_delay = Duration::ZERO;
    config.store.sqlite.path = db.to_owned();
    let app = datastorage::startup::Application::build(config)
        .await
        .unwrap();
    let addr = app.api_addr();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    DataStorage { addr, stop, task }
}

impl DataStorage {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A fast-retrying SDK configuration for tests.
pub fn sdk_config(url: &str) -> AuditConfig {
    let mut c = AuditConfig::new(url);
    c.flush_interval = Duration::from_millis(20);
    c.retry_min_delay = Duration::from_millis(20);
    c.retry_max_delay = Duration::from_millis(300);
    c.probe_interval = Duration::from_millis(100);
    c.request_timeout = Duration::from_secs(5);
    c.token_file = None;
    c
}

/// A Gateway configuration for loopback with every port picked by the OS.
pub fn gateway_config(data_storage_url: &str) -> Config {
    let mut config = Config::default();
    config.server.host = [127, 0, 0, 1].into();
    config.server.api_port = 0;
    config.server.health_port = 0;
    config.server.metrics_port = 0;
    config.server.shutdown_delay = Duration::ZERO;
    config.remediation.backend = BackendKind::Memory;
    config.audit = sdk_config(data_storage_url);
    config
}

/// A Gateway running inside the test process.
pub struct Gateway {
    pub api: SocketAddr,
    pub health: SocketAddr,
    pub metrics: SocketAddr,
    pub audit: AuditStore,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub client: reqwest::Client,
}

/// Starts a Gateway with the memory backend `backend`.
pub async fn start_gateway(config: Config, backend: Arc<dyn RemediationBackend>) -> Gateway {
    let app = Application::build_with_backend(config, backend)
        .await
        .unwrap();
    let (api, health, metrics, audit) = (
        app.api_addr(),
        app.health_addr(),
        app.metrics_addr(),
        app.audit_store(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Gateway {
        api,
        health,
        metrics,
        audit,
        stop,
        task,
        client: reqwest::Client::new(),
    }
}

/// A process has one metrics recorder and DataStorage, running in this same
/// process, would install its own first; the Gateway's must win for its
/// `/metrics` to be tested. Call before starting DataStorage.
pub fn install_gateway_metrics() {
    gateway::telemetry::metrics_handle();
}

/// A DataStorage and a Gateway (memory backend) wired together.
pub struct Stack {
    pub _dir: tempfile::TempDir,
    pub ds: DataStorage,
    pub gw: Gateway,
    pub backend: Arc<MemoryBackend>,
}

pub async fn start_stack() -> Stack {
    install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds = start_datastorage(&dir.path().join("audit.db"), 0).await;
    let backend = Arc::new(MemoryBackend::new(Duration::from_secs(300)));
    let gw = start_gateway(gateway_config(&ds.url()), backend.clone()).await;
    Stack {
        _dir: dir,
        ds,
        gw,
        backend,
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// POSTs `body` as JSON to `path`.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// One firing alert about `deployment` in `namespace`.
pub fn alert(alertname: &str, namespace: &str, deployment: &str) -> Value {
    json!({
        "status": "firing",
        "labels": {
            "alertname": alertname,
            "severity": "critical",
            "namespace": namespace,
            "deployment": deployment,
            "pod": format!("{deployment}-7d9f8-x2x4q")
        },
        "annotations": {"summary": format!("{alertname} on {deployment}")},
        "startsAt": "2026-11-28T05:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "c0ffee"
    })
}

/// An AlertManager v4 webhook carrying `alerts`.
pub fn webhook(alerts: Vec<Value>) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"HighMemory\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "gateway",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts
    })
}

/// Every stored audit event matching `query` (`correlation_id=...`), oldest first.
pub async fn audit_events(ds_url: &str, query: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{ds_url}/api/v1/audit/events?limit=1000&{query}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        events.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    events.reverse();
    events
}

/// The event types of `events`, in order.
pub fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `url` (a readiness endpoint) until it answers `status`, for at most 10 s.
pub async fn wait_status(url: &str, status: u16) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(resp) = client.get(url).send().await {
            if resp.status().as_u16() == status {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
