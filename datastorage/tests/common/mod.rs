//! Shared test support: a real DataStorage on loopback, and event factories.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use datastorage::config::Config;
use datastorage::startup::Application;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// A DataStorage serving on free loopback ports with its own SQLite file.
pub struct TestApp {
    pub api: SocketAddr,
    pub health: SocketAddr,
    pub metrics: SocketAddr,
    pub db_path: PathBuf,
    pub client: reqwest::Client,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

/// A configuration with free ports, a temporary database and no shutdown delay.
pub fn test_config(dir: &tempfile::TempDir) -> Config {
    let mut config = Config::default();
    config.server.host = [127, 0, 0, 1].into();
    config.server.api_port = 0;
    config.server.health_port = 0;
    config.server.metrics_port = 0;
    config.server.shutdown_delay = Duration::ZERO;
    config.store.sqlite.path = dir.path().join("audit.db");
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    adjust(&mut config);
    let db_path = config.store.sqlite.path.clone();
    let app = Application::build(config).await.unwrap();
    let (api, health, metrics) = (app.api_addr(), app.health_addr(), app.metrics_addr());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    TestApp {
        api,
        health,
        metrics,
        db_path,
        client: reqwest::Client::new(),
        stop,
        task,
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub async fn post_batch(&self, events: &[Value]) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/audit/events/batch"))
            .json(events)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path_and_query: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Every event of a correlation id, following cursors to the end.
    pub async fn all_events(&self, correlation_id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path =
                format!("/api/v1/audit/events?limit=1000&correlation_id={correlation_id}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.get_json(&path).await;
            assert_eq!(status, 200, "{page}");
            out.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["pagination"]["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

/// A valid event of `correlation_id`, numbered `n` in its `event_data`.
pub fn event(correlation_id: &str, n: usize) -> Value {
    json!({
        "version": "1.0",
        "event_id": uuid::Uuid::now_v7().to_string(),
        "event_type": "gateway.signal.received",
        "event_timestamp": audit_sdk::timestamp::format(&Utc::now()),
        "event_category": "gateway",
        "event_action": "received",
        "event_outcome": "success",
        "actor_type": "service",
        "actor_id": "gateway",
        "resource_type": "Deployment",
        "resource_id": format!("payments/api-{n}"),
        "correlation_id": correlation_id,
        "severity": "critical",
        "event_data": { "n": n, "signal_name": "HighMemory" }
    })
}

pub fn events(correlation_id: &str, count: usize) -> Vec<Value> {
    (0..count).map(|n| event(correlation_id, n)).collect()
}

/// Asserts an RFC 7807 answer with `status` and type slug `slug`; returns its body.
pub async fn assert_problem(resp: reqwest::Response, status: u16, slug: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("{}{slug}", audit_sdk::problem::TYPE_BASE),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    body
}

/// Calls verify-chain for `correlation_id`.
pub async fn verify(app: &TestApp, correlation_id: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url("/api/v1/audit/verify-chain"))
        .json(&serde_json::json!({ "correlation_id": correlation_id }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}
