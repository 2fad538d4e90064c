//! SDK throughput: `record()` from one producer, and end to end into a real
//! DataStorage over both transports, against DataStorage's own batch ingest
//! measured in the same run.
//!
//! `cargo bench -p audit-sdk --bench sdk [-- EVENTS]`
//!
//! - `record`: one task calling `record()` on pre-built events (DataStorage
//!   unreachable and a buffer large enough, so only `record()` is timed);
//! - `ingest`: the baseline, pre-serialised batches POSTed by 4 concurrent
//!   clients straight to DataStorage (what its own ingest bench measures);
//! - `sdk-http`, `sdk-grpc`: `record()` of every event then `flush()`, timed
//!   until DataStorage acknowledged the last one.

use std::time::{Duration, Instant};

use audit_sdk::{AuditConfig, AuditEvent, AuditStore, TransportKind};
use datastorage::config::Config;
use datastorage::startup::Application;
use datastorage::testing::bench::{post_batches, report, sample_events};
use tokio_util::sync::CancellationToken;

fn events(total: usize, tag: &str) -> Vec<AuditEvent> {
    sample_events(total, &format!("rr-{tag}"), 100)
}

struct Server {
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.host = [127, 0, 0, 1].into();
    config.server.api_port = 0;
    config.server.health_port = 0;
    config.server.metrics_port = 0;
    config.server.shutdown_delay = Duration::ZERO;
    config.store.sqlite.path = dir.path().join("audit.db");
    let app = Application::build(config).await.unwrap();
    let url = format!("http://{}", app.api_addr());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Server {
        url,
        stop,
        task,
        _dir: dir,
    }
}

impl Server {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn record_only(total: usize) -> f64 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = AuditConfig::new("http://127.0.0.1:9");
        config.buffer_capacity = total + 1;
        config.shutdown_timeout = Duration::ZERO;
        let store = AuditStore::new(config).unwrap();
        let batch = events(total, "rec");
        let started = Instant::now();
        for e in batch {
            store.record(e).unwrap();
        }
        let elapsed = started.elapsed();
        store.close().await;
        total as f64 / elapsed.as_secs_f64()
    })
}

async fn baseline_ingest(server: &Server, batch: &[AuditEvent]) -> f64 {
    let url = format!("{}/api/v1/audit/events/batch", server.url);
    let elapsed = post_batches(&url, batch, 1000, 4, None).await;
    batch.len() as f64 / elapsed.as_secs_f64()
}

async fn sdk_end_to_end(server: &Server, transport: TransportKind, batch: Vec<AuditEvent>) -> f64 {
    let mut config = AuditConfig::new(server.url.clone());
    config.transport = transport;
    config.buffer_capacity = batch.len() + 1;
    let store = AuditStore::new(config).unwrap();
    let total = batch.len();
    let started = Instant::now();
    for e in batch {
        store.record(e).unwrap();
    }
    store.flush_timeout(Duration::from_secs(600)).await.unwrap();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let report = store.close().await;
    assert_eq!(report.delivered, total as u64);
    rate
}

fn main() {
    let total: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(100_000);
    let record_rate = record_only(1_000_000);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (ingest, http, grpc) = runtime.block_on(async {
        // Each measurement gets a fresh database so none pays for another's rows.
        let server = start_server().await;
        baseline_ingest(&server, &events(5_000, "warm")).await;
        let ingest = baseline_ingest(&server, &events(total, "base")).await;
        server.stop().await;
        let server = start_server().await;
        let http = sdk_end_to_end(&server, TransportKind::Http, events(total, "http")).await;
        server.stop().await;
        let server = start_server().await;
        let grpc = sdk_end_to_end(&server, TransportKind::Grpc, events(total, "grpc")).await;
        server.stop().await;
        (ingest, http, grpc)
    });

    println!("audit-sdk: {total} events end to end, 1000000 for record()");
    println!("{:<10} {:>14} {:>16}", "path", "events/s", "ratio/ingest");
    println!("{:<10} {:>14.0} {:>16}", "record", record_rate, "-");
    println!("{:<10} {:>14.0} {:>16.2}", "ingest", ingest, 1.0);
    println!("{:<10} {:>14.0} {:>16.2}", "sdk-http", http, http / ingest);
    println!("{:<10} {:>14.0} {:>16.2}", "sdk-grpc", grpc, grpc / ingest);
    report("audit-sdk", "record()", record_rate, "events/s", None);
    for (measure, rate) in [("sdk-http", http), ("sdk-grpc", grpc)] {
        report(
            "audit-sdk",
            measure,
            rate,
            "events/s",
            Some(("DataStorage ingest", ingest)),
        );
    }
}
