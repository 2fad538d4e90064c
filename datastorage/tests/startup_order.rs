//! Start-up order: the health listener answers (alive, not ready) while
//! DataStorage still waits for PostgreSQL, so the kubelet's liveness and
//! startup probes do not restart a process that is only waiting. Real
//! PostgreSQL, stopped while DataStorage starts and started again.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use datastorage::config::Backend;
use datastorage::startup::Application;
use datastorage::testing::pg::PgCluster;
use datastorage::testing::ports::free_port;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// GETs `url`, retrying while the port refuses connections (it is bound by a
/// task of this test that has just been spawned).
async fn get_when_bound(client: &reqwest::Client, url: &str) -> (u16, Value) {
    for _ in 0..500 {
        match client.get(url).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                return (status, resp.json().await.unwrap_or(Value::Null));
            }
            Err(e) if e.is_connect() => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("{url}: {e}"),
        }
    }
    panic!("{url} never answered");
}

#[tokio::test]
async fn health_answers_alive_not_ready_while_postgres_is_down_then_ready() {
    let Some(pg) = PgCluster::start_or_skip() else {
        return;
    };
    pg.stop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    let (api_port, health_port) = (free_port(), free_port());
    config.server.api_port = api_port;
    config.server.health_port = health_port;
    config.store.backend = Backend::Postgres;
    config.store.postgres = pg.default_config();
    config.store.postgres.startup_timeout = Duration::from_secs(60);
    let build = tokio::spawn(Application::build(config));

    let client = reqwest::Client::new();
    let health: SocketAddr = ([127, 0, 0, 1], health_port).into();
    let (status, body) = get_when_bound(&client, &format!("http://{health}/healthz")).await;
    assert_eq!(status, 200, "alive while waiting: {body}");
    let (status, body) = get_when_bound(&client, &format!("http://{health}/readyz")).await;
    assert_eq!(status, 503, "not ready while waiting: {body}");
    assert_eq!(body["status"], "starting");
    assert_eq!(body["waiting_for"], "store");
    // The API is not bound before the store is open: nothing accepts writes yet.
    let api: SocketAddr = ([127, 0, 0, 1], api_port).into();
    assert!(
        tokio::net::TcpStream::connect(api).await.is_err(),
        "the API listener must wait for the store"
    );
    assert!(!build.is_finished());

    pg.restart().unwrap();
    let app = build.await.unwrap().unwrap();
    assert_eq!(
        app.health_addr(),
        health,
        "the same health socket serves on"
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    let mut ready = 0;
    for _ in 0..500 {
        let (status, _) = get_when_bound(&client, &format!("http://{health}/readyz")).await;
        ready = status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ready, 200, "ready once the store is open");
    stop.cancel();
    task.await.unwrap().unwrap();
}
