//! The Kubernetes backend against `kube-fake`, a fake API server on loopback.
//!
//! No Kubernetes API server can run on this machine (no Docker, no kind, no
//! apiserver binary), so the backend talks, through the production client
//! stack, to `kube-fake`, which keeps `uid`/`resourceVersion` semantics, the
//! status subresource and 409s as the real server does (and says in its own
//! documentation what it does not model). The e2e suite covers a real cluster.
//! The replica setup is the one the replica test and the bench use
//! (`common/kube_replica.rs`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::kube_replica::{self, synced_backend, RRS};
use gateway::config::KubernetesConfig;
use gateway::domain::fingerprint::Fingerprint;
use gateway::domain::intake::{Intake, Outcome};
use gateway::domain::signal::{parse_alertmanager, ResourceRef, Signal};
use gateway::remediation::kubernetes::{generation_name, KubernetesBackend};
use gateway::remediation::{BackendError, RemediationBackend};
use kube_fake::{FakeApiServer, Fault, FaultAction};
use serde_json::{json, Value};

/// The holder identity of the replica under test.
const REPLICA: &str = "gateway-0";

/// A short call deadline, so the tests of lost answers and silent servers
/// pass it quickly.
fn settings() -> KubernetesConfig {
    KubernetesConfig {
        call_timeout: Duration::from_millis(300),
        ..KubernetesConfig::default()
    }
}

fn backend(fake: &FakeApiServer) -> KubernetesBackend {
    kube_replica::backend(fake, &settings(), REPLICA)
}

fn intake(fake: &FakeApiServer) -> Intake {
    kube_replica::intake(Arc::new(backend(fake)))
}

fn signal() -> Signal {
    let webhook = json!({"version": "4", "alerts": [{
        "status": "firing",
        "labels": {"alertname": "HighMemory", "severity": "critical", "namespace": "payments",
                   "pod": "api-7d9f8-x2x4q"},
        "annotations": {"summary": "api uses 95% of its memory"},
        "startsAt": "2026-11-28T05:00:00Z"
    }]});
    parse_alertmanager(webhook, Utc::now())
        .unwrap()
        .remove(0)
        .unwrap()
}

fn owned(api_version: &str, kind: &str, name: &str, owner: Option<(&str, &str, &str)>) -> Value {
    let owners = match owner {
        Some((v, k, n)) => json!([{"apiVersion": v, "kind": k, "name": n, "uid": "u",
            "controller": true, "blockOwnerDeletion": true}]),
        None => json!([]),
    };
    json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": "payments", "ownerReferences": owners}})
}

fn seed_deployment_chain(fake: &FakeApiServer) {
    fake.put(
        "/api/v1/namespaces/payments/pods/api-7d9f8-x2x4q",
        owned(
            "v1",
            "Pod",
            "api-7d9f8-x2x4q",
            Some(("apps/v1", "ReplicaSet", "api-7d9f8")),
        ),
    );
    fake.put(
        "/apis/apps/v1/namespaces/payments/replicasets/api-7d9f8",
        owned(
            "apps/v1",
            "ReplicaSet",
            "api-7d9f8",
            Some(("apps/v1", "Deployment", "api")),
        ),
    );
    fake.put(
        "/apis/apps/v1/namespaces/payments/deployments/api",
        owned("apps/v1", "Deployment", "api", None),
    );
}

fn deployment_fingerprint() -> Fingerprint {
    Fingerprint::of(
        None,
        &ResourceRef::new(Some("payments"), "Deployment", "api"),
    )
}

fn writes(fake: &FakeApiServer) -> usize {
    ["create", "update", "patch", "delete"]
        .iter()
        .map(|v| fake.count(v, None))
        .sum()
}

#[tokio::test]
async fn owners_are_followed_from_a_pod_to_its_deployment_and_a_job_to_its_cronjob() {
    let fake = FakeApiServer::start().await;
    seed_deployment_chain(&fake);
    fake.put(
        "/api/v1/namespaces/payments/pods/report-29-abc",
        owned(
            "v1",
            "Pod",
            "report-29-abc",
            Some(("batch/v1", "Job", "report-29")),
        ),
    );
    fake.put(
        "/apis/batch/v1/namespaces/payments/jobs/report-29",
        owned(
            "batch/v1",
            "Job",
            "report-29",
            Some(("batch/v1", "CronJob", "report")),
        ),
    );
    fake.put(
        "/apis/batch/v1/namespaces/payments/cronjobs/report",
        owned("batch/v1", "CronJob", "report", None),
    );
    let backend = backend(&fake);
    let resolve = |kind: &'static str, name: &'static str| {
        let backend = &backend;
        async move {
            backend
                .resolve_target(&ResourceRef::new(Some("payments"), kind, name))
                .await
        }
    };
    fake.reset_calls();
    assert_eq!(
        resolve("Pod", "api-7d9f8-x2x4q").await,
        ResourceRef::new(Some("payments"), "Deployment", "api")
    );
    // A cold cache reads each hop once: Pod, ReplicaSet, Deployment (to see
    // it has no controller of its own); the next signal about it reads nothing.
    assert_eq!(fake.count("get", None), 3, "cold: {:?}", fake.calls());
    assert_eq!(
        resolve("Pod", "api-7d9f8-x2x4q").await,
        ResourceRef::new(Some("payments"), "Deployment", "api")
    );
    assert_eq!(fake.count("get", None), 3, "warm: no further reads");
    assert_eq!(
        resolve("Pod", "report-29-abc").await,
        ResourceRef::new(Some("payments"), "CronJob", "report")
    );
    // An unknown object resolves to itself.
    assert_eq!(
        resolve("Pod", "gone").await,
        ResourceRef::new(Some("payments"), "Pod", "gone")
    );
}

#[tokio::test]
async fn a_new_signal_costs_one_write_and_a_duplicate_one_status_patch() {
    let fake = FakeApiServer::start().await;
    seed_deployment_chain(&fake);
    let intake = intake(&fake);
    let fp = deployment_fingerprint();
    let outcome = intake.process(signal()).await.unwrap();
    let Outcome::Created { name, fingerprint } = outcome else {
        panic!("expected a created outcome, got {outcome:?}");
    };
    assert_eq!(fingerprint, fp);
    assert_eq!(
        name,
        generation_name(&fp, 1),
        "generation 1 of the fingerprint"
    );
    assert_eq!(
        writes(&fake),
        1,
        "the create alone, no status initialisation: {:?}",
        fake.counts(None)
    );
    let rr = fake.get(&format!("{RRS}/{name}")).unwrap();
    assert_eq!(
        rr["metadata"]["labels"]["kubernaut.ai/signal-fingerprint"],
        fp.prefix(63)
    );
    assert_eq!(
        rr["metadata"]["labels"]["kubernaut.ai/signal-generation"],
        "1"
    );
    let spec = &rr["spec"];
    assert_eq!(spec["signalFingerprint"], fp.as_str());
    assert_eq!(spec["signalName"], "HighMemory");
    assert_eq!(
        spec["targetResource"],
        json!({"kind": "Deployment", "name": "api", "namespace": "payments"})
    );
    assert_eq!(spec["firingTime"], "2026-11-28T05:00:00.000000Z");
    let payload: Value = serde_json::from_str(spec["originalPayload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["labels"]["pod"], "api-7d9f8-x2x4q");
    assert_eq!(
        rr["status"]["deduplication"],
        Value::Null,
        "no status yet: it reads as one occurrence"
    );
    let received = spec["receivedTime"].clone();

    // The orchestrator writes its own status fields; a duplicate keeps them.
    fake.modify(&format!("{RRS}/{name}"), |rr| {
        rr["status"]["overallPhase"] = json!("Processing");
        rr["status"]["workflowRef"] = json!({"name": "wf-1"});
    });
    // A replica whose watch cache has seen that write (steady state).
    let intake = kube_replica::intake(synced_backend(&fake, &settings(), REPLICA).await);
    // Owner lookups are cached too: warm them, then count from zero.
    intake.backend().resolve_target(&signal().target).await;
    fake.reset_calls();
    let outcome = intake.process(signal()).await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Duplicate {
                occurrence_count: 2,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(
        fake.count("get", None) + fake.count("list", None),
        0,
        "no reads in steady state: {:?}",
        fake.counts(None)
    );
    let calls = fake.calls();
    let patches: Vec<_> = calls.iter().filter(|c| c.verb == "patch").collect();
    assert_eq!(writes(&fake), 1, "{:?}", fake.counts(None));
    assert_eq!(patches[0].subresource.as_deref(), Some("status"));
    assert_eq!(
        patches[0].header("content-type"),
        Some("application/merge-patch+json")
    );
    assert!(patches[0].query.contains("fieldManager=kubernaut-gateway"));
    let rr = fake.get(&format!("{RRS}/{name}")).unwrap();
    assert_eq!(rr["status"]["deduplication"]["occurrenceCount"], 2);
    assert_eq!(
        rr["status"]["deduplication"]["firstSeenAt"], received,
        "the first duplicate dates the first occurrence from the spec"
    );
    assert_eq!(rr["status"]["overallPhase"], "Processing");
    assert_eq!(rr["status"]["workflowRef"]["name"], "wf-1");
}

#[tokio::test]
async fn a_concurrent_status_write_is_a_conflict_reread_and_retried() {
    let fake = FakeApiServer::start().await;
    seed_deployment_chain(&fake);
    let intake = intake(&fake);
    let Outcome::Created { name, .. } = intake.process(signal()).await.unwrap() else {
        panic!("created");
    };
    let path = format!("{RRS}/{name}");
    // Between the lookup and the patch another writer counts one more.
    fake.inject(
        Fault::new(FaultAction::Delay(Duration::from_millis(50)), 1)
            .verb("patch")
            .resource("remediationrequests"),
    );
    let backend = backend(&fake);
    let active = backend
        .find_active(&deployment_fingerprint())
        .await
        .unwrap()
        .unwrap();
    fake.modify(&path, |rr| {
        // What another replica's counts leave.
        let seen = rr["spec"]["receivedTime"].clone();
        rr["status"]["deduplication"] =
            json!({"firstSeenAt": seen, "lastSeenAt": seen, "occurrenceCount": 5});
    });
    let count = backend
        .record_occurrence(&active, Utc::now())
        .await
        .unwrap();
    assert_eq!(count, 6, "recounted from the fresh object");
    assert_eq!(
        fake.get(&path).unwrap()["status"]["deduplication"]["occurrenceCount"],
        6
    );
    let statuses: Vec<u16> = fake
        .calls()
        .iter()
        .filter(|c| c.verb == "patch")
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [409, 200], "conflict, retry");
}

#[tokio::test]
async fn a_request_that_ended_after_the_lookup_is_not_counted() {
    let fake = FakeApiServer::start().await;
    seed_deployment_chain(&fake);
    let intake = intake(&fake);
    let Outcome::Created { name, .. } = intake.process(signal()).await.unwrap() else {
        panic!("created");
    };
    let backend = backend(&fake);
    let active = backend
        .find_active(&deployment_fingerprint())
        .await
        .unwrap()
        .unwrap();
    fake.modify(&format!("{RRS}/{name}"), |rr| {
        rr["status"]["overallPhase"] = json!("Completed");
    });
    let e = backend
        .record_occurrence(&active, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Conflict(_)), "{e}");
    let rr = fake.get(&format!("{RRS}/{name}")).unwrap();
    assert_eq!(
        rr["status"]["deduplication"],
        Value::Null,
        "not counted on an ended request"
    );
    // The next delivery creates generation 2 — or, when this replica's
    // watch has not delivered the end yet, fails as a conflict (nothing
    // counted) after reading the request fresh, and the one after creates it.
    let outcome = match intake.process(signal()).await {
        Ok(outcome) => outcome,
        Err(e) => {
            assert!(matches!(e.error, BackendError::Conflict(_)), "{e}");
            intake.process(signal()).await.unwrap()
        }
    };
    let Outcome::Created { name: next, .. } = outcome else {
        panic!("a new request after the previous one ended: {outcome:?}");
    };
    assert_eq!(next, generation_name(&deployment_fingerprint(), 2));
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_recognised_as_created_on_its_409() {
    let fake = FakeApiServer::start().await;
    seed_deployment_chain(&fake);
    // The first create is applied, but its answer comes after the deadline.
    fake.inject(
        Fault::new(FaultAction::DelayAnswer(Duration::from_secs(2)), 1)
            .verb("create")
            .resource("remediationrequests"),
    );
    let outcome = intake(&fake).process(signal()).await.unwrap();
    assert!(matches!(outcome, Outcome::Created { .. }), "{outcome:?}");
    let creates: Vec<u16> = fake
        .calls()
        .iter()
        .filter(|c| c.verb == "create")
        .map(|c| c.status)
        .collect();
    assert!(
        creates.contains(&409),
        "the retry saw its own object: {creates:?}"
    );
    assert_eq!(fake.list(RRS, "").len(), 1);
}

#[tokio::test]
async fn a_duplicate_count_whose_answer_was_lost_is_counted_once() {
    let fake = FakeApiServer::start().await;
    seed_deployment_chain(&fake);
    let intake = intake(&fake);
    let Outcome::Created { name, .. } = intake.process(signal()).await.unwrap() else {
        panic!("created");
    };
    // The duplicate's status patch is applied, but its answer comes after
    // the call deadline: the backend cannot know from the answer.
    fake.inject(
        Fault::new(FaultAction::DelayAnswer(Duration::from_secs(2)), 1)
            .verb("patch")
            .resource("remediationrequests"),
    );
    let outcome = intake.process(signal()).await;
    let rr = fake.get(&format!("{RRS}/{name}")).unwrap();
    println!(
        "outcome {outcome:?}; stored deduplication {}; calls {:?}",
        rr["status"]["deduplication"],
        fake.counts(None)
    );
    assert!(
        matches!(
            outcome,
            Ok(Outcome::Duplicate {
                occurrence_count: 2,
                ..
            })
        ),
        "a lost answer is not a failure: {outcome:?}"
    );
    assert_eq!(
        rr["status"]["deduplication"]["occurrenceCount"], 2,
        "counted once, not twice"
    );
    // The next duplicate counts on top, as usual.
    let outcome = intake.process(signal()).await.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Duplicate {
                occurrence_count: 3,
                ..
            }
        ),
        "{outcome:?}"
    );
    let rr = fake.get(&format!("{RRS}/{name}")).unwrap();
    assert_eq!(rr["status"]["deduplication"]["occurrenceCount"], 3);
    assert_eq!(
        rr["status"]["deduplication"]["recentSignals"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn an_unanswered_duplicate_count_that_did_not_apply_is_retried() {
    let fake = FakeApiServer::start().await;
    seed_deployment_chain(&fake);
    let intake = intake(&fake);
    let Outcome::Created { name, .. } = intake.process(signal()).await.unwrap() else {
        panic!("created");
    };
    // The connection breaks before the server applies anything.
    fake.inject(
        Fault::new(FaultAction::Disconnect, 1)
            .verb("patch")
            .resource("remediationrequests"),
    );
    let outcome = intake.process(signal()).await;
    let rr = fake.get(&format!("{RRS}/{name}")).unwrap();
    println!(
        "outcome {outcome:?}; stored deduplication {}; patches {}",
        rr["status"]["deduplication"],
        fake.count("patch", None)
    );
    assert!(
        matches!(
            outcome,
            Ok(Outcome::Duplicate {
                occurrence_count: 2,
                ..
            })
        ),
        "retried within the budget: {outcome:?}"
    );
    assert_eq!(rr["status"]["deduplication"]["occurrenceCount"], 2);
}

#[tokio::test]
async fn a_429_with_a_long_retry_after_fails_within_the_call_budget() {
    let fake = FakeApiServer::start().await;
    fake.inject(
        Fault::new(
            FaultAction::Fail {
                code: 429,
                retry_after: Some(600),
            },
            100,
        )
        .verb("list"),
    );
    let backend = backend(&fake);
    let started = Instant::now();
    let e = backend.check_ready().await.unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // (The watch cache's own list is not a readiness call.)
    let probes = fake
        .calls()
        .iter()
        .filter(|c| c.verb == "list" && c.query.contains("limit=1"))
        .count();
    assert_eq!(probes, 3, "one call and call_retries (2) retries");
}

#[tokio::test]
async fn a_silent_api_server_fails_the_call_at_its_deadline() {
    let fake = FakeApiServer::start().await;
    fake.set_latency(Duration::from_secs(30));
    let backend = backend(&fake);
    let started = Instant::now();
    let e = backend
        .find_active(&deployment_fingerprint())
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e}");
    // 3 attempts of 300 ms plus jittered backoff.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn readiness_needs_the_api_server_and_the_crd() {
    let fake = FakeApiServer::start().await;
    let backend = backend(&fake);
    backend.check_ready().await.unwrap();
    fake.hide("remediationrequests");
    let e = backend.check_ready().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("deploy/crds/remediationrequest.yaml"),
        "{e}"
    );
}

#[tokio::test]
async fn a_refused_create_is_a_failure_with_its_code() {
    let fake = FakeApiServer::start().await;
    fake.inject(
        Fault::new(
            FaultAction::Fail {
                code: 403,
                retry_after: None,
            },
            1,
        )
        .verb("create")
        .resource("remediationrequests"),
    );
    let failure = intake(&fake).process(signal()).await.unwrap_err();
    assert_eq!(failure.error.code(), "backend_rejected");
    assert_eq!(fake.count("create", None), 1, "a refusal is not retried");
    assert!(fake.list(RRS, "").is_empty());
}
