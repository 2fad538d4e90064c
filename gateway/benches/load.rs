//! Load benchmark: the Gateway (memory backend, real DataStorage in process,
//! audit on, spooled) under a steady 1,000 alerts/s from a client on the same
//! machine, with `audit.durable_ack` off and on, and the same load against a
//! trivial axum handler in the same run.
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

/// One Gateway under test, spooling its audit events in `spool_dir`.
struct Gateway {
    url: String,
    audit: audit_sdk::AuditStore,
    backend: Arc<MemoryBackend>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn gateway(
    ds_url: &str,
    spool_dir: &std::path::Path,
    durable_ack: bool,
) -> anyhow::Result<Gateway> {
    let mut config = Config::default();
    config.server.host = [127, 0, 0, 1].into();
    config.server.api_port = 0;
    config.server.health_port = 0;
    config.server.metrics_port = 0;
    config.server.shutdown_delay = Duration::ZERO;
    config.remediation.backend = BackendKind::Memory;
    config.audit.data_storage_url = ds_url.to_owned();
    config.audit.token_file = None;
    // Both Gateways spool alike (default fsync policy); only the wait differs.
    config.audit.spool_dir = Some(spool_dir.to_owned());
    config.audit.durable_ack = Some(durable_ack);
    let backend = Arc::new(MemoryBackend::new(Duration::from_secs(3600)));
    let app = Application::build_with_backend(config, backend.clone()).await?;
    let url = format!("http://{}/api/v1/signals/prometheus", app.api_addr());
    let audit = app.audit_store();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    Ok(Gateway {
        url,
        audit,
        backend,
        stop,
        task,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let numbers: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let rate = numbers.first().copied().unwrap_or(1000);
    let seconds = numbers.get(1).copied().unwrap_or(10);

    let dir = tempfile::tempdir()?;
    // DataStorage runs on its own machine in production: its database lives
    // in memory here (when /dev/shm exists), so its commits' fsyncs do not
    // share this disk's journal with the spools and the durable wait measures
    // the Gateway's own disk.
    let ds_dir = match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm")?,
        false => tempfile::tempdir()?,
    };
    let mut ds_config = datastorage::config::Config::default();
    ds_config.server.host = [127, 0, 0, 1].into();
    ds_config.server.api_port = 0;
    ds_config.server.health_port = 0;
    ds_config.server.metrics_port = 0;
    ds_config.server.shutdown_delay = Duration::ZERO;
    ds_config.store.sqlite.path = ds_dir.path().join("audit.db");
    let ds = datastorage::startup::Application::build(ds_config).await?;
    let ds_url = format!("http://{}", ds.api_addr());
    let ds_stop = CancellationToken::new();
    let ds_task = tokio::spawn(ds.run_until_stopped(ds_stop.clone()));

    let off = gateway(&ds_url, &dir.path().join("spool-off"), false).await?;
    let on = gateway(&ds_url, &dir.path().join("spool-on"), true).await?;
    let (trivial_url, trivial_stop) = trivial_server().await;

    println!(
        "gateway load: {rate} req/s for {seconds} s per target (alternating 2 s rounds), \
         {TARGETS} distinct Deployments (first alert of each creates, the rest deduplicate), \
         open loop, client in the same process on the same machine; both Gateways spool \
         (default fsync), `durable` answers only after the signal's audit events are fsynced"
    );
    // Warm up connections and code paths on each.
    drive("warmup", trivial_url.clone(), rate, 1).await;
    drive("warmup", off.url.clone(), rate, 1).await;
    drive("warmup", on.url.clone(), rate, 1).await;

    // Alternating rounds of 2 s, rotating which goes first, so drift of the
    // machine (frequency, other load) hits every side alike.
    let rounds = seconds.div_ceil(2).max(1);
    let per_round = seconds.min(2);
    let mut runs = [
        Run::empty("trivial"),
        Run::empty("gateway"),
        Run::empty("durable"),
    ];
    let urls = [trivial_url.clone(), off.url.clone(), on.url.clone()];
    for round in 0..rounds as usize {
        for k in 0..runs.len() {
            let i = (round + k) % runs.len();
            let name = runs[i].name;
            runs[i].absorb(drive(name, urls[i].clone(), rate, per_round).await);
        }
    }
    let [trivial, gateway, durable] = runs;
    trivial.print();
    gateway.print();
    durable.print();
    println!(
        "ratio gateway/trivial: p50 {:.2}x  p99 {:.2}x  throughput {:.2}x",
        ms(gateway.percentile(0.5)) / ms(trivial.percentile(0.5)),
        ms(gateway.percentile(0.99)) / ms(trivial.percentile(0.99)),
        gateway.throughput() / trivial.throughput(),
    );
    println!(
        "ratio durable_ack on/off: p50 {:.2}x  p99 {:.2}x  throughput {:.2}x",
        ms(durable.percentile(0.5)) / ms(gateway.percentile(0.5)),
        ms(durable.percentile(0.99)) / ms(gateway.percentile(0.99)),
        durable.throughput() / gateway.throughput(),
    );
    for (measure, q) in [("p50", 0.5), ("p99", 0.99)] {
        report(
            "gateway alerts (open loop)",
            measure,
            ms(gateway.percentile(q)),
            "ms",
            Some(("trivial axum handler", ms(trivial.percentile(q)))),
        );
        report(
            "gateway alerts (open loop)",
            &format!("durable_ack {measure}"),
            ms(durable.percentile(q)),
            "ms",
            Some(("durable_ack off", ms(gateway.percentile(q)))),
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
    let ratio = durable.percentile(0.99).as_secs_f64() / p99.as_secs_f64();
    println!(
        "aim durable_ack p99 <= 1.5 x off: {} ({ratio:.2}x)",
        if ratio <= 1.5 { "met" } else { "NOT met" }
    );

    for (name, gw) in [("gateway", &off), ("durable", &on)] {
        let flushed = Instant::now();
        gw.audit.flush().await?;
        println!(
            "audit ({name}): every event acknowledged by DataStorage {:.0} ms after the load ended; {} RemediationRequests",
            ms(flushed.elapsed()),
            gw.backend.requests().len()
        );
    }
    trivial_stop.cancel();
    for gw in [off, on] {
        gw.stop.cancel();
        gw.task.await??;
    }
    ds_stop.cancel();
    ds_task.await??;
    Ok(())
}
