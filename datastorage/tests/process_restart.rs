//! The real binary, killed and restarted: what was acknowledged stays stored.

mod common;

use datastorage::testing::ports::free_port;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::process::{Child, Command};

struct Server {
    child: Child,
    api: u16,
    health: u16,
}

fn start(db: &Path, api: u16, health: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .env("DATASTORAGE_SERVER__HOST", "127.0.0.1")
        .env("DATASTORAGE_SERVER__API_PORT", api.to_string())
        .env("DATASTORAGE_SERVER__HEALTH_PORT", health.to_string())
        .env("DATASTORAGE_SERVER__METRICS_PORT", free_port().to_string())
        .env("DATASTORAGE_SERVER__SHUTDOWN_DELAY", "0s")
        .env("DATASTORAGE_STORE__SQLITE__PATH", db)
        .env("DATASTORAGE_LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start datastorage");
    Server { child, api, health }
}

impl Server {
    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let url = format!("http://127.0.0.1:{}/readyz", self.health);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = client.get(&url).send().await {
                if resp.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("datastorage exited early: {status}");
            }
            assert!(Instant::now() < deadline, "datastorage not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api)
    }
}

async fn count(client: &reqwest::Client, server: &Server, corr: &str) -> usize {
    let page: Value = client
        .get(server.url(&format!(
            "/api/v1/audit/events?correlation_id={corr}&limit=1000"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn an_acknowledged_event_survives_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let client = reqwest::Client::new();
    let (api, health) = (free_port(), free_port());

    let mut server = start(&db, api, health);
    server.wait_ready(&client).await;
    let batch = events("corr-kill", 20);
    let resp = client
        .post(server.url("/api/v1/audit/events/batch"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // SIGKILL: no shutdown hook, no checkpoint.
    server.child.kill().await.unwrap();
    drop(server);

    let mut server = start(&db, api, health);
    server.wait_ready(&client).await;
    assert_eq!(count(&client, &server, "corr-kill").await, 20);
    // The chain continues where it stopped.
    let more = events("corr-kill", 5);
    client
        .post(server.url("/api/v1/audit/events/batch"))
        .json(&more)
        .send()
        .await
        .unwrap();
    let report: Value = client
        .post(server.url("/api/v1/audit/verify-chain"))
        .json(&serde_json::json!({"correlation_id": "corr-kill"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["is_valid"], true, "{report}");
    assert_eq!(report["total_events"], 25);
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_folds_the_wal_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let client = reqwest::Client::new();
    let mut server = start(&db, free_port(), free_port());
    server.wait_ready(&client).await;
    client
        .post(server.url("/api/v1/audit/events/batch"))
        .json(&events("corr-term", 3))
        .send()
        .await
        .unwrap();

    let pid = server.child.id().unwrap().to_string();
    assert!(StdCommand::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("exit within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let wal = db.with_extension("db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        wal_len, 0,
        "WAL should be checkpointed and truncated at close"
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}
