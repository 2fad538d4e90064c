//! The Kubernetes backend on a fake API server with 2 ms per call, against the
//! memory backend in the same run: 500 alerts/s open loop about 250 workloads
//! (each workload's first alert is new, the rest duplicates), through the
//! intake (dedup rule + audit recording).
//!
//! `cargo bench -p gateway --bench kubernetes -- [rate_per_s] [seconds]`
//!
//! Steady state: the replica's watch cache has synced and its owner cache
//! knows the workloads (each is resolved once before the run, as a Gateway
//! that has seen them within the owner TTL would have); the cold owner
//! lookups are reported on their own. Latency is measured from each alert's
//! scheduled time, so a stall shows in the percentiles. API calls per signal
//! are counted by the fake, by verb, and the time of each backend step
//! (lock wait, lookup, create, count) is reported to show where it goes.

#[path = "../tests/common/kube_replica.rs"]
mod kube_replica;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datastorage::testing::bench::report;
use gateway::config::KubernetesConfig;
use gateway::domain::fingerprint::Fingerprint;
use gateway::domain::intake::Outcome;
use gateway::domain::signal::ResourceRef;
use gateway::remediation::crd::RemediationRequest;
use gateway::remediation::memory::MemoryBackend;
use gateway::remediation::{
    ActiveRequest, BackendError, Created, HeldLock, NewRequest, RemediationBackend,
};
use kube::api::{Patch, PatchParams};
use kube::Api;
use kube_fake::FakeApiServer;
use kube_replica::{intake, synced_backend, workload_signal};
use serde_json::json;

const WORKLOADS: usize = 250;

/// Time spent in each backend step, for the profile.
#[derive(Debug, Default)]
struct Steps(Mutex<BTreeMap<&'static str, Vec<Duration>>>);

impl Steps {
    fn add(&self, step: &'static str, took: Duration) {
        self.0.lock().unwrap().entry(step).or_default().push(took);
    }
}

/// A backend that times every step of the one it wraps.
#[derive(Debug)]
struct Timed {
    inner: Arc<dyn RemediationBackend>,
    steps: Arc<Steps>,
}

impl Timed {
    async fn time<T>(&self, step: &'static str, f: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let out = f.await;
        self.steps.add(step, start.elapsed());
        out
    }
}

#[async_trait]
impl RemediationBackend for Timed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn resolve_target(&self, target: &ResourceRef) -> ResourceRef {
        self.time("resolve_target", self.inner.resolve_target(target))
            .await
    }
    async fn lock(&self, fingerprint: &Fingerprint) -> Result<Box<dyn HeldLock>, BackendError> {
        self.time("lock wait", self.inner.lock(fingerprint)).await
    }
    async fn find_active(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<Option<ActiveRequest>, BackendError> {
        self.time("find_active", self.inner.find_active(fingerprint))
            .await
    }
    async fn new_request_name(&self, fingerprint: &Fingerprint) -> Result<String, BackendError> {
        self.time("new_request_name", self.inner.new_request_name(fingerprint))
            .await
    }
    async fn create(&self, request: &NewRequest) -> Result<Created, BackendError> {
        self.time("create", self.inner.create(request)).await
    }
    async fn record_occurrence(
        &self,
        active: &ActiveRequest,
        seen_at: DateTime<Utc>,
    ) -> Result<u64, BackendError> {
        self.time(
            "record_occurrence",
            self.inner.record_occurrence(active, seen_at),
        )
        .await
    }
    async fn check_ready(&self) -> Result<(), BackendError> {
        self.inner.check_ready().await
    }
}

struct Run {
    latencies: Vec<Duration>,
    /// The new signals' latencies (the rest are duplicates).
    new: Vec<Duration>,
    created: usize,
    errors: usize,
    elapsed: Duration,
    steps: Arc<Steps>,
}

async fn drive(backend: Arc<dyn RemediationBackend>, rate: u64, seconds: u64) -> Run {
    let steps = Arc::new(Steps::default());
    let intake = intake(Arc::new(Timed {
        inner: backend,
        steps: steps.clone(),
    }));
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at).await;
        let intake = intake.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = intake.process(workload_signal(i % WORKLOADS)).await;
            (at.elapsed(), outcome)
        }));
    }
    let mut run = Run {
        latencies: Vec::with_capacity(total),
        new: Vec::new(),
        created: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        steps,
    };
    for t in tasks {
        let (latency, outcome) = t.await.expect("signal task");
        run.latencies.push(latency);
        match outcome {
            Ok(Outcome::Created { .. }) => {
                run.created += 1;
                run.new.push(latency);
            }
            // Only firing alerts are sent: nothing resolves or is ignored.
            Ok(Outcome::Duplicate { .. } | Outcome::Resolved { .. } | Outcome::Ignored { .. }) => {}
            Err(_) => run.errors += 1,
        }
    }
    run.elapsed = start.elapsed();
    run.latencies.sort();
    run.new.sort();
    run
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn print_steps(name: &str, steps: &Steps) {
    for (step, times) in steps.0.lock().unwrap().iter_mut() {
        times.sort();
        println!(
            "  {name} {step}: {} calls, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            times.len(),
            percentile(times, 0.5),
            percentile(times, 0.99),
            percentile(times, 1.0)
        );
    }
}

/// The machine's load average (1, 5, 15 min): the bench shares its cores.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// p50 and p99 (ms) of `n` sequential runs of `f`.
async fn sequential<F, Fut>(n: usize, mut f: F) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        f(i).await;
        took.push(start.elapsed());
    }
    took.sort();
    (percentile(&took, 0.5), percentile(&took, 0.99))
}

/// What one API call costs by itself, on a fake with `latency` per call: one
/// client's sequential GETs and status merge patches of one RemediationRequest
/// (p50, p99 in ms each), the floor under the backend's steps.
async fn call_cost(latency: Duration) -> ((f64, f64), (f64, f64)) {
    const CALLS: usize = 300;
    let fake = FakeApiServer::builder().latency(latency).start().await;
    let settings = KubernetesConfig::default();
    let backend = synced_backend(&fake, &settings, "cost").await;
    let Ok(Outcome::Created { name, .. }) = intake(backend).process(workload_signal(0)).await
    else {
        panic!("the first signal creates a request");
    };
    let api: Api<RemediationRequest> = Api::namespaced(
        kube_replica::client(&fake, &settings, "cost"),
        kube_replica::NS,
    );
    let get = sequential(CALLS, |_| {
        let api = api.clone();
        let name = name.clone();
        async move {
            api.get(&name).await.expect("get");
        }
    })
    .await;
    let patch = sequential(CALLS, |i| {
        let api = api.clone();
        let name = name.clone();
        async move {
            let seen = "2026-11-28T05:00:00Z";
            let patch = Patch::Merge(json!({"status": {"deduplication": {
                "firstSeenAt": seen, "lastSeenAt": seen, "occurrenceCount": i + 2}}}));
            api.patch_status(&name, &PatchParams::default(), &patch)
                .await
                .expect("status patch");
        }
    })
    .await;
    (get, patch)
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(500);
    let seconds = args.get(1).copied().unwrap_or(5);
    let load_before = load();

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
    let backend = synced_backend(&fake, &KubernetesConfig::default(), "bench-0").await;
    fake.reset_calls();
    // Steady state: every workload's owners known (one lookup each).
    for w in 0..WORKLOADS {
        backend.resolve_target(&workload_signal(w).target).await;
    }
    let cold = fake.counts(None);
    fake.reset_calls();
    let kube = drive(backend, rate, seconds).await;
    let signals = kube.latencies.len() as f64;
    let counts = fake.counts(None);
    let duplicates = signals - kube.created as f64;

    let load_after = load();
    // The floor: the fake's own cost per call (alone, sequential), and what
    // a 2 ms tokio timer costs on this runtime (1 ms ticks, rounded up; the
    // fake holds its latency precisely instead, see kube-fake's latency.rs).
    let (get_0, patch_0) = call_cost(Duration::ZERO).await;
    let (get_2, patch_2) = call_cost(Duration::from_millis(2)).await;
    let sleep_2 = sequential(300, |_| tokio::time::sleep(Duration::from_millis(2))).await;

    println!("load average before the runs {load_before}, after {load_after}");
    for (name, run) in [("memory", &memory), ("kubernetes", &kube)] {
        println!(
            "{name}: {} signals, {} created, {} errors, p50 {:.2} ms, p99 {:.2} ms \
             (new signals: p50 {:.2} ms, p99 {:.2} ms), {:.0} signals/s",
            run.latencies.len(),
            run.created,
            run.errors,
            percentile(&run.latencies, 0.5),
            percentile(&run.latencies, 0.99),
            percentile(&run.new, 0.5),
            percentile(&run.new, 0.99),
            run.latencies.len() as f64 / run.elapsed.as_secs_f64()
        );
        print_steps(name, &run.steps);
    }
    println!(
        "one call alone on the fake, p50/p99 ms: GET {:.2}/{:.2}, status patch {:.2}/{:.2} \
         (no latency); GET {:.2}/{:.2}, status patch {:.2}/{:.2} (2 ms latency); \
         tokio's 2 ms timer {:.2}/{:.2}",
        get_0.0,
        get_0.1,
        patch_0.0,
        patch_0.1,
        get_2.0,
        get_2.1,
        patch_2.0,
        patch_2.1,
        sleep_2.0,
        sleep_2.1
    );
    println!(
        "kubernetes API calls: {counts:?} for {signals} signals ({} new, {duplicates} duplicates); \
         cold owner lookups before the run: {cold:?} for {WORKLOADS} workloads",
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
        "p99 of new signals",
        percentile(&kube.new, 0.99),
        "ms",
        Some(("memory", percentile(&memory.new, 0.99))),
    );
    report(
        "gateway_kubernetes",
        "fake status patch alone p50 (2 ms latency)",
        patch_2.0,
        "ms",
        Some(("no latency", patch_0.0)),
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
    for verb in [
        "create", "patch", "update", "delete", "get", "list", "watch",
    ] {
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
        "cold owner reads per workload",
        cold.values().sum::<usize>() as f64 / WORKLOADS as f64,
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
