//! One machine-readable line per benchmark figure, so `make bench` can print
//! every benchmark of the workspace as one table (`e2e bench-table`).
//!
//! Each bench keeps its own human-readable output and adds, for every figure
//! worth comparing, a line `bench-result {json}` written by [`report`] and read
//! back by [`parse`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_sdk::AuditEvent;
use serde::{Deserialize, Serialize};

/// The prefix that marks a result line in a bench's output.
pub const PREFIX: &str = "bench-result ";

/// One figure of one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Which benchmark (`datastorage ingest`).
    pub bench: String,
    /// What was measured (`http`, `p99`).
    pub measure: String,
    /// The figure.
    pub value: f64,
    /// Its unit (`events/s`, `ms`).
    pub unit: String,
    /// The baseline measured in the same run, if the figure is compared to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// `value / baseline value`, when there is a baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

/// Prints one result line to stdout.
pub fn report(bench: &str, measure: &str, value: f64, unit: &str, baseline: Option<(&str, f64)>) {
    let result = BenchResult {
        bench: bench.to_owned(),
        measure: measure.to_owned(),
        value,
        unit: unit.to_owned(),
        baseline: baseline.map(|(name, _)| name.to_owned()),
        ratio: baseline.map(|(_, base)| value / base),
    };
    println!(
        "{PREFIX}{}",
        serde_json::to_string(&result).expect("a result serializes")
    );
}

/// Every result line in `output` (other lines are ignored).
pub fn parse(output: &str) -> Vec<BenchResult> {
    output
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(PREFIX))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

/// `total` events shaped like the Gateway's `signal.received`, spread round-robin
/// over `correlations` correlation ids `<prefix>-<n>`: every batch of them
/// touches every one of those chains.
pub fn sample_events(total: usize, prefix: &str, correlations: usize) -> Vec<AuditEvent> {
    let correlations = correlations.max(1);
    (0..total)
        .map(|n| sample_event(n, format!("{prefix}-{}", n % correlations)))
        .collect()
}

/// `total` events as [`sample_events`], in runs of `per_correlation`
/// consecutive events sharing one correlation id (`<prefix>-<n>`), as a
/// Gateway's are: each remediation request gets its received / created /
/// deduplicated events within moments, and its replicas write disjoint
/// requests, so concurrent batches rarely share a chain.
pub fn runs_of_events(total: usize, prefix: &str, per_correlation: usize) -> Vec<AuditEvent> {
    let per_correlation = per_correlation.max(1);
    (0..total)
        .map(|n| sample_event(n, format!("{prefix}-{}", n / per_correlation)))
        .collect()
}

fn sample_event(n: usize, correlation_id: String) -> AuditEvent {
    AuditEvent::builder("gateway.signal.received", correlation_id)
        .category("gateway")
        .action("received")
        .actor("service", "gateway")
        .resource("Deployment", format!("payments/api-{}", n % 97))
        .namespace("payments")
        .severity("critical")
        .data("signal_name", "HighMemoryUsage")
        .data("fingerprint", format!("{n:064x}"))
        .data(
            "labels",
            serde_json::json!({"team": "payments", "env": "prod"}),
        )
        .build()
}

/// Posts `events` to a batch endpoint in batches of `batch` from `clients`
/// concurrent connections and returns how long that took. The bodies are
/// serialised before the clock starts (the client's cost is not the
/// server's); any answer but 201 panics.
pub async fn post_batches(
    url: &str,
    events: &[AuditEvent],
    batch: usize,
    clients: usize,
    token: Option<&str>,
) -> Duration {
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        events
            .chunks(batch.max(1))
            .map(|c| serde_json::to_vec(c).expect("events serialize"))
            .collect(),
    );
    let client = reqwest::Client::new();
    let clients = clients.max(1);
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let (bodies, client) = (bodies.clone(), client.clone());
            let (url, token) = (url.to_owned(), token.map(str::to_owned));
            tokio::spawn(async move {
                for body in bodies.iter().skip(w).step_by(clients) {
                    let mut request = client.post(&url);
                    if let Some(token) = &token {
                        request = request.bearer_auth(token);
                    }
                    let resp = request
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("the server answers");
                    let status = resp.status();
                    assert_eq!(status, 201, "{}", resp.text().await.unwrap_or_default());
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("a bench client panicked");
    }
    started.elapsed()
}

/// A DataStorage configuration for a bench: loopback, ephemeral ports, no
/// shutdown delay, WARN logs, auth off (a bench that measures auth turns it on).
pub fn loopback_config() -> crate::config::Config {
    let mut config = crate::config::Config::default();
    config.server.host = [127, 0, 0, 1].into();
    config.server.api_port = 0;
    config.server.health_port = 0;
    config.server.metrics_port = 0;
    config.server.shutdown_delay = Duration::ZERO;
    config.log.level = "warn".into();
    config.auth.mode = auth::AuthMode::Disabled;
    config
}

/// A DataStorage serving in this process.
#[derive(Debug)]
pub struct Served {
    /// `http://host:port` of its API.
    pub base: String,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    /// Builds and starts the application of `config`.
    pub async fn start(config: crate::config::Config) -> Self {
        let app = crate::startup::Application::build(config)
            .await
            .expect("the bench's DataStorage starts");
        let base = format!("http://{}", app.api_addr());
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Served { base, stop, task }
    }

    /// Shuts it down gracefully and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("the server task")
            .expect("a clean shutdown");
    }
}

/// The median of rates measured in rounds (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The `p`-th percentile (0..=1) of latencies sorted ascending.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `GET /api/v1/audit/events?correlation_id=…` (default page of 100, with its
/// `pagination.total`) against a store filled beforehand with correlation ids
/// `<prefix>-<n>`, `n < correlations`.
#[derive(Debug, Clone, Copy)]
pub struct CorrelationQueries<'a> {
    /// `http://host:port` of the DataStorage under test.
    pub base: &'a str,
    /// Prefix of the filled correlation ids.
    pub prefix: &'a str,
    /// How many correlation ids were filled.
    pub correlations: usize,
    /// Queries per measurement, one after another.
    pub queries: usize,
}

impl CorrelationQueries<'_> {
    /// Every query's latency, sorted; each must answer 200 with events.
    pub async fn latencies(&self) -> Vec<Duration> {
        let client = reqwest::Client::new();
        let mut latencies = Vec::with_capacity(self.queries);
        for q in 0..self.queries {
            // A spread of correlation ids (7919 is prime).
            let corr = format!("{}-{}", self.prefix, (q * 7919) % self.correlations);
            let started = Instant::now();
            let resp = client
                .get(format!(
                    "{}/api/v1/audit/events?correlation_id={corr}",
                    self.base
                ))
                .send()
                .await
                .expect("the server answers");
            assert_eq!(resp.status(), 200);
            let body = resp.bytes().await.expect("a body");
            latencies.push(started.elapsed());
            assert!(body.len() > 100, "{corr} has no events");
        }
        latencies.sort();
        latencies
    }

    fn print(&self, when: &str, latencies: &[Duration]) {
        println!(
            "  GET ?correlation_id= (HTTP, {} queries, page of 100 + total, {when}): \
             p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            self.queries,
            ms(percentile(latencies, 0.50)),
            ms(percentile(latencies, 0.99)),
            ms(*latencies.last().expect("at least one query")),
        );
    }

    /// Measures the queries alone, then while `ingest` is POSTed to the same
    /// server (batches of `batch` from `clients` connections), and reports
    /// p50 and p99 alone and p99 during ingest against the quiet p99 under
    /// `bench`.
    pub async fn quiet_and_during_ingest(
        &self,
        bench: &str,
        ingest: Vec<AuditEvent>,
        batch: usize,
        clients: usize,
    ) {
        let quiet = self.latencies().await;
        self.print("quiet", &quiet);
        for (measure, q) in [("query p50", 0.50), ("query p99", 0.99)] {
            report(bench, measure, ms(percentile(&quiet, q)), "ms", None);
        }
        let url = format!("{}/api/v1/audit/events/batch", self.base);
        let count = ingest.len();
        let writer =
            tokio::spawn(async move { post_batches(&url, &ingest, batch, clients, None).await });
        let during = self.latencies().await;
        let took = writer.await.expect("the ingest beside the queries");
        self.print("during ingest", &during);
        println!(
            "  (ingest beside them: {count} events in {:.2} s)",
            took.as_secs_f64()
        );
        report(
            bench,
            "query p99 during ingest",
            ms(percentile(&during, 0.99)),
            "ms",
            Some(("quiet p99", ms(percentile(&quiet, 0.99)))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_found_among_other_output() {
        let line = serde_json::to_string(&BenchResult {
            bench: "b".into(),
            measure: "http".into(),
            value: 30.0,
            unit: "events/s".into(),
            baseline: Some("direct".into()),
            ratio: Some(0.5),
        })
        .unwrap();
        let output = format!("noise\n{PREFIX}{line}\n{PREFIX}not json\nmore noise\n");
        let results = parse(&output);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].ratio, Some(0.5));
    }
}
