//! A real Prometheus and Alertmanager (the Debian `prometheus` and
//! `prometheus-alertmanager` binaries) on loopback, each in its own temp dir,
//! plus a small exposition server playing kube-state-metrics and node-exporter.
//!
//! Without the binaries the tests skip with the reason printed, except when
//! `CI` is set: CI installs them (`.ci/run`), so there a missing binary fails.
//! Processes are killed (SIGKILL) when dropped; their logs are printed when the
//! test panics.
#![allow(dead_code)] // not every test uses every helper

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;

pub use datastorage::testing::ports::free_port;

/// `PROMETHEUS_BIN` / `ALERTMANAGER_BIN` override the lookup on `PATH`.
fn find_binary(env: &str, names: &[&str]) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{env}={} is not a file", path.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "none of {} found on PATH (install Debian's prometheus and prometheus-alertmanager, or set {env})",
        names.join(", ")
    ))
}

/// The two binaries, or `None` (with the reason printed) when a test should skip.
pub fn binaries_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    let found = find_binary("PROMETHEUS_BIN", &["prometheus"]).and_then(|p| {
        find_binary(
            "ALERTMANAGER_BIN",
            &["prometheus-alertmanager", "alertmanager"],
        )
        .map(|a| (p, a))
    });
    match found {
        Ok(both) => Some(both),
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("CI is set, so {test} must run with a real Prometheus and Alertmanager, but: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}

/// A child process killed with SIGKILL on drop; its log is printed on panic.
pub struct Process {
    name: &'static str,
    child: std::process::Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, bin: &Path, args: &[String], dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(bin)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Self { name, child, log }
    }

    /// The process's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log());
        }
    }
}

/// Prometheus and Alertmanager, started with the given rules and receiver.
pub struct Monitoring {
    pub prometheus: Process,
    pub alertmanager: Process,
    pub prometheus_url: String,
    pub alertmanager_url: String,
    _dir: tempfile::TempDir,
}

/// What to start.
pub struct Setup<'a> {
    pub prometheus_bin: &'a Path,
    pub alertmanager_bin: &'a Path,
    /// `host:port` of the exposition server.
    pub exporter: String,
    /// Rule file (YAML) for Prometheus.
    pub rules: &'a str,
    /// Webhook URL Alertmanager delivers to.
    pub webhook_url: String,
}

impl Monitoring {
    pub async fn start(setup: Setup<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (prom_port, am_port) = (free_port(), free_port());
        let am_dir = dir.path().join("alertmanager");
        let prom_dir = dir.path().join("prometheus");
        std::fs::create_dir_all(&am_dir).unwrap();
        std::fs::create_dir_all(&prom_dir).unwrap();

        // group_wait ~1 s, group_interval 1 s so the resolved notification
        // follows quickly; repeat_interval long so a firing group is not
        // re-sent while the test runs.
        let am_config = format!(
            r#"route:
  receiver: gateway
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: gateway
    webhook_configs:
      - url: {url}
        send_resolved: true
"#,
            url = setup.webhook_url
        );
        std::fs::write(am_dir.join("alertmanager.yml"), am_config).unwrap();
        let alertmanager = Process::spawn(
            "alertmanager",
            setup.alertmanager_bin,
            &[
                format!(
                    "--config.file={}",
                    am_dir.join("alertmanager.yml").display()
                ),
                format!("--storage.path={}", am_dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{am_port}"),
                // No gossip listener (it would bind 9094).
                "--cluster.listen-address=".to_owned(),
                "--log.level=warn".to_owned(),
            ],
            &am_dir,
        );

        // kube-prometheus scrapes kube-state-metrics with honor_labels and drops
        // the scrape's pod/service/endpoint/namespace; node-exporter's
        // `instance` is relabelled to the node name.
        let prom_config = format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: kube-state-metrics
    honor_labels: true
    static_configs:
      - targets: ["{exporter}"]
        labels:
          container: kube-rbac-proxy-main
  - job_name: node-exporter
    metrics_path: /node/metrics
    static_configs:
      - targets: ["{exporter}"]
        labels:
          container: kube-rbac-proxy
          service: node-exporter
          endpoint: https
    relabel_configs:
      - target_label: instance
        replacement: worker-3
"#,
            exporter = setup.exporter
        );
        std::fs::write(prom_dir.join("prometheus.yml"), prom_config).unwrap();
        std::fs::write(prom_dir.join("rules.yml"), setup.rules).unwrap();
        let prometheus = Process::spawn(
            "prometheus",
            setup.prometheus_bin,
            &[
                format!(
                    "--config.file={}",
                    prom_dir.join("prometheus.yml").display()
                ),
                format!("--storage.tsdb.path={}", prom_dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{prom_port}"),
                "--web.enable-lifecycle".to_owned(),
                // Resolved alerts reach Alertmanager at the next evaluation.
                "--rules.alert.resend-delay=1s".to_owned(),
                "--log.level=warn".to_owned(),
            ],
            &prom_dir,
        );
        let monitoring = Self {
            prometheus,
            alertmanager,
            prometheus_url: format!("http://127.0.0.1:{prom_port}"),
            alertmanager_url: format!("http://127.0.0.1:{am_port}"),
            _dir: dir,
        };
        wait_ready(&format!("{}/-/ready", monitoring.alertmanager_url)).await;
        wait_ready(&format!("{}/-/ready", monitoring.prometheus_url)).await;
        monitoring
    }

    /// Alertmanager's own `/metrics`, summed by metric name for one `integration`.
    pub async fn alertmanager_counter(&self, metric: &str, integration: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.alertmanager_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sum_series(&text, metric, &format!("integration=\"{integration}\""))
    }
}

/// Sums the samples of `metric` whose labels contain `matcher`.
pub fn sum_series(text: &str, metric: &str, matcher: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            (name == metric && labels.contains(matcher)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Polls a readiness endpoint until it answers 200 (at most 30 s).
pub async fn wait_ready(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Ok`, at most `timeout`; the failure names
/// `what` was awaited and the last state `check` reported (its `Err`).
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// An exposition server: `/metrics` (kube-state-metrics) and `/node/metrics`
/// (node-exporter), whose texts the test swaps.
#[derive(Clone)]
pub struct Exporter {
    pub addr: std::net::SocketAddr,
    ksm: Arc<Mutex<String>>,
    node: Arc<Mutex<String>>,
}

impl Exporter {
    pub async fn start(ksm: &str, node: &str) -> Self {
        let ksm = Arc::new(Mutex::new(ksm.to_owned()));
        let node = Arc::new(Mutex::new(node.to_owned()));
        let (k, n) = (ksm.clone(), node.clone());
        let app = Router::new()
            .route(
                "/metrics",
                get(move || std::future::ready(k.lock().unwrap().clone())),
            )
            .route(
                "/node/metrics",
                get(move || std::future::ready(n.lock().unwrap().clone())),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, ksm, node }
    }

    /// Replaces what both endpoints expose.
    pub fn set(&self, ksm: &str, node: &str) {
        *self.ksm.lock().unwrap() = ksm.to_owned();
        *self.node.lock().unwrap() = node.to_owned();
    }
}
