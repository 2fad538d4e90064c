//! The Kubernetes backend on a fake API server with 2 ms per call, against the
//! memory backend in the same run: 500 alerts/s open loop about 250 workloads
//! (each workload's first alert is new, the rest duplicates), through the
//! intake (dedup rule + audit recording).
//!
//! `cargo bench -p gateway --bench kubernetes -- [rate_per_s] [seconds]`
//!
//! Latency is measured from each alert's scheduled time, so a stall shows in
//! the percentiles. API calls per signal are counted by the fake, by verb.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_sdk::AuditStore;
use chrono::Utc;
use datastorage::testing::bench::report;
use gateway::audit::GatewayAudit;
use gateway::config::KubernetesConfig;
use gateway::domain::intake::{Intake, Outcome};
use gateway::domain::signal::{ResourceRef, Signal, SignalSource};
use gateway::remediation::kubernetes::{client_config, KubernetesBackend};
use gateway::remediation::memory::MemoryBackend;
use gateway::remediation::RemediationBackend;
use kube_fake::FakeApiServer;
use serde_json::json;

const WORKLOADS: usize = 250;

fn signal(workload: usize) -> Signal {
    let name = format!("api-{workload}");
    Signal {
        name: "HighMemory".into(),
        severity: "critical".into(),
        source: SignalSource::Prometheus,
        target: ResourceRef::new(Some("payments"), "Deployment", &name),
        labels: BTreeMap::from([("alertname".into(), "HighMemory".into())]),
        annotations: BTreeMap::new(),
        firing_time: None,
        received_time: Utc::now(),
        payload: json!({"labels": {"deployment": name}}),
    }
}

struct Run {
    latencies: Vec<Duration>,
    created: usize,
    errors: usize,
    elapsed: Duration,
}

async fn drive(backend: Arc<dyn RemediationBackend>, rate: u64, seconds: u64) -> Run {
    let audit = GatewayAudit::new(
        AuditStore::new(audit_sdk::AuditConfig::new("http://127.0.0.1:9")).unwrap(),
    );
    let intake = Intake::new(backend, audit, None);
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at).await;
        let intake = intake.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = intake.process(signal(i % WORKLOADS)).await;
            (at.elapsed(), outcome)
        }));
    }
    let mut run = Run {
        latencies: Vec::with_capacity(total),
        created: 0,
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (latency, outcome) = t.await.unwrap();
        run.latencies.push(latency);
        match outcome {
            Ok(Outcome::Created { .. }) => run.created += 1,
            // Only firing alerts are sent: nothing resolves or is ignored.
            Ok(Outcome::Duplicate { .. } | Outcome::Resolved { .. } | Outcome::Ignored { .. }) => {}
            Err(_) => run.errors += 1,
        }
    }
    run.elapsed = start.elapsed();
    run.latencies.sort();
    run
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(500);
    let seconds = args.get(1).copied().unwrap_or(5);

    let memory = drive(
        Arc::new(MemoryBackend::new(Duration::from_secs(3600))),
        rate,
        seconds,
    )
    .await;

    let fake = FakeApiServer::builder()
        .latency(Duration::from_millis(2))
        .start()
        .await;
    let settings = KubernetesConfig::default();
    let client = kube::Client::try_from(client_config(fake.config(), &settings)).unwrap();
    let backend = Arc::new(KubernetesBackend::new(client, &settings, "bench-0"));
    let synced = Instant::now();
    while !backend.is_synced() && synced.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fake.reset_calls();
    let kube = drive(backend, rate, seconds).await;
    let signals = kube.latencies.len() as f64;
    let counts = fake.counts(None);
    let duplicates = signals - kube.created as f64;

    for (name, run) in [("memory", &memory), ("kubernetes", &kube)] {
        println!(
            "{name}: {} signals, {} created, {} errors, p50 {:.2} ms, p99 {:.2} ms, {:.0} signals/s",
            run.latencies.len(),
            run.created,
            run.errors,
            percentile(&run.latencies, 0.5),
            percentile(&run.latencies, 0.99),
            run.latencies.len() as f64 / run.elapsed.as_secs_f64()
        );
    }
    println!(
        "kubernetes API calls: {counts:?} for {signals} signals ({} new, {duplicates} duplicates)",
        kube.created
    );
    let base_p50 = percentile(&memory.latencies, 0.5);
    let base_p99 = percentile(&memory.latencies, 0.99);
    report(
        "gateway_kubernetes",
        "p50",
        percentile(&kube.latencies, 0.5),
        "ms",
        Some(("memory", base_p50)),
    );
    report(
        "gateway_kubernetes",
        "p99",
        percentile(&kube.latencies, 0.99),
        "ms",
        Some(("memory", base_p99)),
    );
    report(
        "gateway_kubernetes",
        "throughput",
        signals / kube.elapsed.as_secs_f64(),
        "signals/s",
        Some((
            "memory",
            memory.latencies.len() as f64 / memory.elapsed.as_secs_f64(),
        )),
    );
    for verb in ["create", "patch", "update", "delete", "get", "list"] {
        let n = counts.get(verb).copied().unwrap_or(0) as f64;
        report(
            "gateway_kubernetes",
            &format!("{verb} calls per signal"),
            n / signals,
            "calls",
            None,
        );
    }
    let writes = ["create", "patch", "update", "delete"]
        .iter()
        .map(|v| counts.get(v).copied().unwrap_or(0))
        .sum::<usize>() as f64;
    // Duplicates cost one patch each; what remains is the new signals' share.
    let per_new = (writes - duplicates) / (kube.created.max(1) as f64);
    report(
        "gateway_kubernetes",
        "writes per new signal",
        per_new,
        "calls",
        None,
    );
    report(
        "gateway_kubernetes",
        "errors",
        kube.errors as f64,
        "signals",
        Some(("memory", memory.errors as f64)),
    );
}
