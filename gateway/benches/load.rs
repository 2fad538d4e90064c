//! Load benchmark: the Gateway (memory backend, real DataStorage in process,
//! audit on) under a steady 1,000 alerts/s from a client on the same machine,
//! and the same load against a trivial axum handler in the same run.
//!
//! `cargo bench -p gateway --bench load -- [rate_per_s] [seconds]`
//!
//! Open loop: requests are sent on a fixed schedule whatever the answers, and
//! latency is measured from each request's scheduled time, so a stall shows up
//! in the percentiles instead of silently slowing the client down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use datastorage::testing::bench::report;
use gateway::config::{BackendKind, Config};
use gateway::remediation::memory::MemoryBackend;
use gateway::startup::Application;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const TARGETS: usize = 500;

struct Run {
    name: &'static str,
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Run {
    fn empty(name: &'static str) -> Self {
        Self {
            name,
            latencies: Vec::new(),
            errors: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn absorb(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i]
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self) {
        println!(
            "{:<8} {:>7} ok {:>4} err  {:>9.1} req/s  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  max {:>8.3} ms",
            self.name,
            self.latencies.len(),
            self.errors,
            self.throughput(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.90)),
            ms(self.percentile(0.99)),
            ms(self.percentile(1.0)),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn webhook(i: usize) -> Value {
    let deployment = format!("api-{}", i % TARGETS);
    json!({
        "version": "4", "status": "firing", "receiver": "gateway",
        "groupKey": "{}:{alertname=\"HighMemory\"}",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighMemory", "severity": "critical",
                       "namespace": "payments", "deployment": deployment,
                       "pod": format!("api-{}-7d9f8-x2x4q", i % TARGETS)},
            "annotations": {"summary": "memory above 90% of the limit"},
            "startsAt": "2026-11-28T05:00:00Z",
            "generatorURL": "http://prometheus:9090/graph"
        }]
    })
}

/// Sends `rate` requests per second for `seconds` to `url`.
async fn drive(name: &'static str, url: String, rate: u64, seconds: u64) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..TARGETS * 2)
            .map(|i| serde_json::to_vec(&webhook(i)).unwrap())
            .collect(),
    );
    let total = (rate * seconds) as usize;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = start + period * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(&url)
                .header("content-type", "application/json")
                .body(bodies[i % bodies.len()].clone())
                .send()
                .await;
            let ok = matches!(&resp, Ok(r) if r.status().is_success());
            (ok, scheduled.elapsed())
        }));
    }
    let mut run = Run {
        name,
        latencies: Vec::with_capacity(total),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (ok, latency) = task.await.unwrap();
        if ok {
            run.latencies.push(latency);
        } else {
            run.errors += 1;
        }
    }
    run.elapsed = start.elapsed();
    run
}

async fn trivial_server() -> (String, CancellationToken) {
    let app = Router::new().route(
        "/api/v1/signals/prometheus",
        post(|_body: axum::body::Bytes| async {
            (
                axum::http::StatusCode::CREATED,
                axum::Json(json!({"status": "created"})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/v1/signals/prometheus",
        listener.local_addr().unwrap()
    );
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    (url, stop)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let numbers: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let rate = numbers.first().copied().unwrap_or(1000);
    let seconds = numbers.get(1).copied().unwrap_or(10);

    let dir = tempfile::tempdir()?;
    let mut ds_config = datastorage::config::Config::default();
    ds_config.server.host = [127, 0, 0, 1].into();
    ds_config.server.api_port = 0;
    ds_config.server.health_port = 0;
    ds_config.server.metrics_port = 0;
    ds_config.server.shutdown_delay = Duration::ZERO;
    ds_config.store.sqlite.path = dir.path().join("audit.db");
    let ds = datastorage::startup::Application::build(ds_config).await?;
    let ds_url = format!("http://{}", ds.api_addr());
    let ds_stop = CancellationToken::new();
    let ds_task = tokio::spawn(ds.run_until_stopped(ds_stop.clone()));

    let mut config = Config::default();
    config.server.host = [127, 0, 0, 1].into();
    config.server.api_port = 0;
    config.server.health_port = 0;
    config.server.metrics_port = 0;
    config.server.shutdown_delay = Duration::ZERO;
    config.remediation.backend = BackendKind::Memory;
    config.audit.data_storage_url = ds_url;
    config.audit.token_file = None;
    let backend = Arc::new(MemoryBackend::new(Duration::from_secs(3600)));
    let app = Application::build_with_backend(config, backend.clone()).await?;
    let gw_url = format!("http://{}/api/v1/signals/prometheus", app.api_addr());
    let audit = app.audit_store();
    let gw_stop = CancellationToken::new();
    let gw_task = tokio::spawn(app.run_until_stopped(gw_stop.clone()));
    let (trivial_url, trivial_stop) = trivial_server().await;

    println!(
        "gateway load: {rate} req/s for {seconds} s per target (alternating 2 s rounds), \
         {TARGETS} distinct Deployments (first alert of each creates, the rest deduplicate), \
         open loop, client in the same process on the same machine"
    );
    // Warm up connections and code paths on both.
    drive("warmup", trivial_url.clone(), rate, 1).await;
    drive("warmup", gw_url.clone(), rate, 1).await;

    // Alternating rounds of 2 s, swapping which goes first, so drift of the
    // machine (frequency, other load) hits both sides alike.
    let rounds = seconds.div_ceil(2).max(1);
    let mut trivial = Run::empty("trivial");
    let mut gateway = Run::empty("gateway");
    for round in 0..rounds {
        let per_round = seconds.min(2);
        if round % 2 == 0 {
            trivial.absorb(drive("trivial", trivial_url.clone(), rate, per_round).await);
            gateway.absorb(drive("gateway", gw_url.clone(), rate, per_round).await);
        } else {
            gateway.absorb(drive("gateway", gw_url.clone(), rate, per_round).await);
            trivial.absorb(drive("trivial", trivial_url.clone(), rate, per_round).await);
        }
    }
    trivial.print();
    gateway.print();
    println!(
        "ratio gateway/trivial: p50 {:.2}x  p99 {:.2}x  throughput {:.2}x",
        ms(gateway.percentile(0.5)) / ms(trivial.percentile(0.5)),
        ms(gateway.percentile(0.99)) / ms(trivial.percentile(0.99)),
        gateway.throughput() / trivial.throughput(),
    );
    for (measure, q) in [("p50", 0.5), ("p99", 0.99)] {
        report(
            "gateway alerts (open loop)",
            measure,
            ms(gateway.percentile(q)),
            "ms",
            Some(("trivial axum handler", ms(trivial.percentile(q)))),
        );
    }
    let p99 = gateway.percentile(0.99);
    println!(
        "aim p99 < 10 ms: {}",
        if p99 < Duration::from_millis(10) {
            "met"
        } else {
            "NOT met"
        }
    );

    let flushed = Instant::now();
    audit.flush().await?;
    println!(
        "audit: every event acknowledged by DataStorage {:.0} ms after the load ended; {} RemediationRequests",
        ms(flushed.elapsed()),
        backend.requests().len()
    );
    trivial_stop.cancel();
    gw_stop.cancel();
    gw_task.await??;
    ds_stop.cancel();
    ds_task.await??;
    Ok(())
}
