//! Two real DataStorage processes against one real PostgreSQL, writing the same
//! correlation ids at the same time: every chain stays linear.

mod common;

use datastorage::testing::ports::free_port;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use datastorage::testing::pg::PgCluster;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const CORRELATIONS: usize = 10;
const EVENTS_PER_PROCESS: usize = 5_000;
const BATCH: usize = 100;
const SENDERS_PER_PROCESS: usize = 4;

struct Server {
    /// Killed when the test ends (`kill_on_drop`).
    _child: Child,
    api: u16,
}

async fn start(cluster: &PgCluster, client: &reqwest::Client) -> Server {
    let (api, health) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .env("DATASTORAGE_SERVER__HOST", "127.0.0.1")
        .env("DATASTORAGE_SERVER__API_PORT", api.to_string())
        .env("DATASTORAGE_SERVER__HEALTH_PORT", health.to_string())
        .env("DATASTORAGE_SERVER__METRICS_PORT", free_port().to_string())
        .env("DATASTORAGE_SERVER__SHUTDOWN_DELAY", "0s")
        .env("DATASTORAGE_STORE__BACKEND", "postgres")
        .env("DATASTORAGE_STORE__POSTGRES__HOST", "127.0.0.1")
        .env(
            "DATASTORAGE_STORE__POSTGRES__PORT",
            cluster.port().to_string(),
        )
        .env("DATASTORAGE_STORE__POSTGRES__USER", "postgres")
        .env("DATASTORAGE_STORE__POSTGRES__DBNAME", "postgres")
        .env("DATASTORAGE_LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start datastorage");
    let url = format!("http://127.0.0.1:{health}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(&url).send().await {
            if resp.status() == 200 {
                return Server { _child: child, api };
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("datastorage exited early: {status}");
        }
        assert!(Instant::now() < deadline, "datastorage not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api)
    }
}

/// Batches of `BATCH` events spread over every correlation id.
fn batches(process: usize) -> Vec<Vec<Value>> {
    (0..EVENTS_PER_PROCESS / BATCH)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    let mut e = event(&format!("corr-replica-{}", n % CORRELATIONS), n);
                    e["event_data"]["process"] = json!(process);
                    e
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_writing_the_same_correlations_keep_every_chain_linear() {
    let Some(cluster) = tokio::task::spawn_blocking(PgCluster::start_or_skip)
        .await
        .unwrap()
    else {
        return;
    };
    let client = reqwest::Client::new();
    // Both start at once: migrations run under an advisory lock, once.
    let (a, b) = tokio::join!(start(&cluster, &client), start(&cluster, &client));
    let servers = [a, b];

    let mut senders = tokio::task::JoinSet::new();
    for (p, server) in servers.iter().enumerate() {
        let all = batches(p);
        for s in 0..SENDERS_PER_PROCESS {
            let mine: Vec<Vec<Value>> = all
                .iter()
                .skip(s)
                .step_by(SENDERS_PER_PROCESS)
                .cloned()
                .collect();
            let (client, url) = (client.clone(), server.url("/api/v1/audit/events/batch"));
            senders.spawn(async move {
                for batch in mine {
                    let resp = client.post(&url).json(&batch).send().await.unwrap();
                    let status = resp.status();
                    let body: Value = resp.json().await.unwrap();
                    assert_eq!(status, 201, "{body}");
                    assert_eq!(body["created"], BATCH, "{body}");
                }
            });
        }
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }

    let expected = 2 * EVENTS_PER_PROCESS / CORRELATIONS;
    for c in 0..CORRELATIONS {
        let corr = format!("corr-replica-{c}");
        let report: Value = client
            .post(servers[c % 2].url("/api/v1/audit/verify-chain"))
            .json(&json!({ "correlation_id": corr }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(report["is_valid"], true, "{report}");
        assert_eq!(report["total_events"], expected, "{report}");
    }

    // And straight from the table: chain_seq is exactly 1..=n per correlation,
    // and both processes' events are interleaved in every chain.
    let db = cluster.superuser().await.unwrap();
    let rows = db
        .query(
            "SELECT correlation_id, count(*), count(DISTINCT chain_seq), min(chain_seq), \
             max(chain_seq), count(DISTINCT event_data->>'process') \
             FROM audit_events GROUP BY correlation_id ORDER BY correlation_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), CORRELATIONS);
    for row in rows {
        let corr: String = row.get(0);
        let n = expected as i64;
        let got: (i64, i64, i64, i64, i64) =
            (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        assert_eq!(
            got,
            (n, n, 1, n, 2),
            "{corr}: count, distinct seq, min, max, writers"
        );
    }
}
