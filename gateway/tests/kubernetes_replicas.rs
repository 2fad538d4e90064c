//! Two Gateway replicas on one (fake) API server: every signal counted once,
//! one active RemediationRequest per fingerprint, even when a replica stalls
//! mid-decision for longer than any lease would last.
//!
//! The API server is `kube-fake` (no real one can run here); it keeps `uid`
//! stable across replace and checks `resourceVersion` preconditions as the
//! real one does, which is what this scenario depends on.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::kube_replica::{backend, intake, workload_signal, REPLICA_HEADER, RRS};
use gateway::config::KubernetesConfig;
use gateway::domain::intake::{Intake, Outcome};
use kube_fake::{FakeApiServer, Fault, FaultAction};

const WORKLOADS: usize = 20;
const ALERTS: usize = 200;

fn replica(fake: &FakeApiServer, name: &str) -> Intake {
    intake(Arc::new(backend(fake, &KubernetesConfig::default(), name)))
}

#[tokio::test]
async fn two_replicas_one_stalled_past_the_lease_count_every_signal_once() {
    let fake = FakeApiServer::builder()
        .latency(Duration::from_millis(20))
        .start()
        .await;
    // The previous design held a per-fingerprint Lease of 1 s; replica b
    // stalls on its first RemediationRequest create for longer than that:
    // mid-decision, after it looked for an active request and found none.
    let lease = Duration::from_secs(1);
    fake.inject(
        Fault::new(FaultAction::Delay(lease + Duration::from_millis(500)), 1)
            .verb("create")
            .resource("remediationrequests")
            .header(REPLICA_HEADER, "b"),
    );
    let replicas = [replica(&fake, "a"), replica(&fake, "b")];
    let mut tasks = Vec::new();
    for i in 0..ALERTS {
        // Both replicas get alerts about every workload.
        let intake = replicas[(i / WORKLOADS) % 2].clone();
        tasks.push(tokio::spawn(async move {
            // Alertmanager retries a failed delivery; count the attempts.
            for attempt in 1..=20 {
                match intake.process(workload_signal(i % WORKLOADS)).await {
                    Ok(outcome) => return (outcome, attempt),
                    Err(e) => {
                        eprintln!("alert {i} attempt {attempt}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            panic!("alert {i} never accepted");
        }));
    }
    let mut created = 0;
    let mut retries = 0;
    for t in tasks {
        let (outcome, attempts) = t.await.unwrap();
        retries += attempts - 1;
        if matches!(outcome, Outcome::Created { .. }) {
            created += 1;
        }
    }
    let requests = fake.list(RRS, "");
    let active: Vec<_> = requests
        .iter()
        .filter(|rr| rr["status"]["overallPhase"].is_null())
        .collect();
    let total: i64 = active
        .iter()
        .map(|rr| {
            rr["status"]["deduplication"]["occurrenceCount"]
                .as_i64()
                .unwrap_or(1)
        })
        .sum();
    let mut per_fp: BTreeMap<String, usize> = BTreeMap::new();
    for rr in &active {
        *per_fp
            .entry(rr["spec"]["signalFingerprint"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    println!(
        "alerts {ALERTS}, workloads {WORKLOADS}, created answers {created}, retried deliveries {retries}, \
         active requests {}, occurrences {total}, API calls {:?}",
        active.len(),
        fake.counts(None)
    );
    // The replicas did race: some creates lost on the name.
    let collisions = fake
        .calls()
        .iter()
        .filter(|c| c.verb == "create" && c.status == 409)
        .count();
    println!("creates answered 409 AlreadyExists: {collisions}");
    assert!(collisions > 0, "the replicas never raced");
    assert!(
        per_fp.values().all(|n| *n == 1),
        "one active request per fingerprint: {per_fp:?}"
    );
    assert_eq!(active.len(), WORKLOADS);
    assert_eq!(created, WORKLOADS, "one created answer per workload");
    assert_eq!(total, ALERTS as i64, "every signal counted exactly once");
}
