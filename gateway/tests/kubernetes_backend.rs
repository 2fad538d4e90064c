//! The Kubernetes backend against kube's mock service.
//!
//! No Kubernetes API server can run on this machine (no Docker, no kind, no
//! apiserver binary), so every test here wires `kube::Client` to a
//! `tower_test::mock` service and plays the API server's part: it answers each
//! request the backend makes and records it, and the test asserts the exact
//! requests (method, path, body). The e2e suite covers a real cluster.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_sdk::AuditStore;
use chrono::Utc;
use gateway::audit::GatewayAudit;
use gateway::config::KubernetesConfig;
use gateway::domain::fingerprint::Fingerprint;
use gateway::domain::intake::{Intake, Outcome};
use gateway::domain::signal::{parse_alertmanager, ResourceRef, Signal};
use gateway::remediation::kubernetes::KubernetesBackend;
use gateway::remediation::{ActiveRequest, BackendError, NewRequest, RemediationBackend};
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock;

const NS: &str = "kubernaut-system";
const RRS: &str = "/apis/kubernaut.ai/v1alpha1/namespaces/kubernaut-system/remediationrequests";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kubernaut-system/leases";

/// One request the backend sent.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

type Log = Arc<Mutex<Vec<Call>>>;

/// A client whose API server is `respond`: it gets each request and returns
/// (status, JSON body). Every request is recorded in the returned log.
fn fake_api(mut respond: impl FnMut(&Call) -> (u16, Value) + Send + 'static) -> (Client, Log) {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let recorded = log.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let call = Call {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or("").to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, answer) = respond(&call);
            recorded.lock().unwrap().push(call);
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, NS), log)
}

fn backend(client: Client) -> KubernetesBackend {
    let config = KubernetesConfig {
        lease_duration: Duration::from_secs(2),
        ..KubernetesConfig::default()
    };
    KubernetesBackend::new(client, &config, "gateway-0")
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{reason} (fake API server)"), "reason": reason, "code": code})
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

/// An RR as the API server would return it.
fn stored_rr(
    name: &str,
    fp: &str,
    resource_version: &str,
    count: i64,
    phase: Option<&str>,
) -> Value {
    let mut status = json!({"deduplication": {"firstSeenAt": "2026-11-28T05:00:00Z",
        "lastSeenAt": "2026-11-28T05:00:00Z", "occurrenceCount": count}});
    if let Some(p) = phase {
        status["overallPhase"] = json!(p);
    }
    json!({
        "apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequest",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": resource_version,
            "uid": format!("uid-{name}"), "creationTimestamp": "2026-11-28T05:00:00Z",
            "labels": {"kubernaut.ai/signal-fingerprint": &fp[..63]}},
        "spec": {"signalFingerprint": fp, "signalName": "HighMemory", "severity": "critical",
            "signalSource": "prometheus",
            "targetResource": {"kind": "Deployment", "name": "api", "namespace": "payments"},
            "signalLabels": {}, "signalAnnotations": {}, "receivedTime": "2026-11-28T05:00:00Z",
            "originalPayload": "{}"},
        "status": status
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequestList",
        "metadata": {"resourceVersion": "10"}, "items": items})
}

fn echo_with_version(call: &Call, rv: &str) -> Value {
    let mut obj = call.body.clone();
    obj["metadata"]["resourceVersion"] = json!(rv);
    obj["metadata"]["uid"] = json!("uid-created");
    obj
}

fn deployment_fingerprint() -> Fingerprint {
    Fingerprint::of(
        None,
        &ResourceRef::new(Some("payments"), "Deployment", "api"),
    )
}

// No API server can run here: kube's mock service plays its part.
#[tokio::test]
async fn owners_are_followed_from_a_pod_to_its_deployment() {
    let (client, log) = fake_api(|call| {
        let owner = |kind: &str, name: &str| {
            json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u",
                "controller": true, "blockOwnerDeletion": true}])
        };
        let object = |api_version: &str, kind: &str, name: &str, owners: Value| {
            json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"name": name, "namespace": "payments", "ownerReferences": owners}})
        };
        match call.path.as_str() {
            "/api/v1/namespaces/payments/pods/api-7d9f8-x2x4q" => (
                200,
                object(
                    "v1",
                    "Pod",
                    "api-7d9f8-x2x4q",
                    owner("ReplicaSet", "api-7d9f8"),
                ),
            ),
            "/apis/apps/v1/namespaces/payments/replicasets/api-7d9f8" => (
                200,
                object(
                    "apps/v1",
                    "ReplicaSet",
                    "api-7d9f8",
                    owner("Deployment", "api"),
                ),
            ),
            "/apis/apps/v1/namespaces/payments/deployments/api" => {
                (200, object("apps/v1", "Deployment", "api", json!([])))
            }
            _ => (404, status(404, "NotFound")),
        }
    });
    let resolved = backend(client)
        .resolve_target(&ResourceRef::new(
            Some("payments"),
            "Pod",
            "api-7d9f8-x2x4q",
        ))
        .await;
    assert_eq!(
        resolved,
        ResourceRef::new(Some("payments"), "Deployment", "api")
    );
    let paths: Vec<String> = log.lock().unwrap().iter().map(|c| c.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/payments/pods/api-7d9f8-x2x4q",
            "/apis/apps/v1/namespaces/payments/replicasets/api-7d9f8",
            "/apis/apps/v1/namespaces/payments/deployments/api",
        ]
    );
}

// No API server can run here: kube's mock service plays its part.
#[tokio::test]
async fn owner_resolution_stops_after_five_hops_and_falls_back_on_errors() {
    // Every object claims to be owned by another ReplicaSet: a cycle.
    let (client, log) = fake_api(|call| {
        let name = call.path.rsplit('/').next().unwrap().to_owned();
        (
            200,
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "payments", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}x"),
                 "uid": "u", "controller": true}]}}),
        )
    });
    let resolved = backend(client)
        .resolve_target(&ResourceRef::new(Some("payments"), "ReplicaSet", "rs"))
        .await;
    assert_eq!(log.lock().unwrap().len(), 5);
    assert_eq!(resolved.name, "rsxxxxx");

    let (client, _) = fake_api(|_| (403, status(403, "Forbidden")));
    let pod = ResourceRef::new(Some("payments"), "Pod", "api-0");
    assert_eq!(backend(client).resolve_target(&pod).await, pod);
}

// No API server can run here: kube's mock service plays its part.
#[tokio::test]
async fn a_new_signal_takes_the_lease_creates_the_rr_initialises_its_status_and_releases() {
    let fp = deployment_fingerprint();
    let fp_text = fp.to_string();
    let (client, log) = fake_api(
        move |call| match (call.method.as_str(), call.path.as_str()) {
            ("POST", LEASES) => (201, echo_with_version(call, "1")),
            ("GET", RRS) => (200, list(vec![])),
            ("POST", RRS) => (201, echo_with_version(call, "2")),
            ("PATCH", p) if p.ends_with("/status") => {
                let name = p.split('/').nth_back(1).unwrap();
                (200, stored_rr(name, &fp_text, "3", 1, None))
            }
            ("DELETE", p) if p.starts_with(LEASES) => (200, status(200, "Success")),
            // Owner lookups: the pod belongs to nothing we can see.
            _ => (404, status(404, "NotFound")),
        },
    );
    let audit = GatewayAudit::new(
        AuditStore::new(audit_sdk::AuditConfig::new("http://127.0.0.1:9")).unwrap(),
    );
    let intake = Intake::new(Arc::new(backend(client)), audit, None);
    let outcome = intake.process(signal()).await.unwrap();
    let Outcome::Created { name, fingerprint } = outcome else {
        panic!("expected a created outcome, got {outcome:?}");
    };
    let pod_fp = Fingerprint::of(
        None,
        &ResourceRef::new(Some("payments"), "Pod", "api-7d9f8-x2x4q"),
    );
    assert_eq!(fingerprint, pod_fp);
    assert!(
        name.starts_with(&format!("rr-{}-", pod_fp.prefix(12))),
        "{name}"
    );

    let calls = log.lock().unwrap().clone();
    let sequence: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    let lease = format!("rr-lock-{}", pod_fp.prefix(40));
    assert_eq!(
        sequence,
        [
            "GET /api/v1/namespaces/payments/pods/api-7d9f8-x2x4q".to_owned(),
            format!("POST {LEASES}"),
            format!("GET {RRS}"),
            format!("POST {RRS}"),
            format!("PATCH {RRS}/{name}/status"),
            format!("DELETE {LEASES}/{lease}"),
        ]
    );
    // The lease names this replica and the fingerprint.
    let lease_body = &calls[1].body;
    assert_eq!(lease_body["metadata"]["name"], lease.as_str());
    assert_eq!(lease_body["spec"]["holderIdentity"], "gateway-0");
    assert_eq!(lease_body["spec"]["leaseDurationSeconds"], 2);
    // Duplicates are looked up by the fingerprint label.
    assert!(
        calls[2].query.contains(&format!(
            "labelSelector=kubernaut.ai%2Fsignal-fingerprint%3D{}",
            pod_fp.prefix(63)
        )),
        "{}",
        calls[2].query
    );
    // The created object.
    let rr = &calls[3].body;
    assert_eq!(rr["apiVersion"], "kubernaut.ai/v1alpha1");
    assert_eq!(rr["kind"], "RemediationRequest");
    assert_eq!(rr["metadata"]["name"], name.as_str());
    assert_eq!(rr["metadata"]["namespace"], NS);
    assert_eq!(
        rr["metadata"]["labels"]["kubernaut.ai/signal-fingerprint"],
        pod_fp.prefix(63)
    );
    let spec = &rr["spec"];
    assert_eq!(spec["signalFingerprint"], pod_fp.as_str());
    assert_eq!(spec["signalName"], "HighMemory");
    assert_eq!(spec["severity"], "critical");
    assert_eq!(spec["signalSource"], "prometheus");
    assert_eq!(
        spec["targetResource"],
        json!({"kind": "Pod", "name": "api-7d9f8-x2x4q", "namespace": "payments"})
    );
    assert_eq!(spec["signalLabels"]["alertname"], "HighMemory");
    assert_eq!(
        spec["signalAnnotations"]["summary"],
        "api uses 95% of its memory"
    );
    assert_eq!(spec["firingTime"], "2026-11-28T05:00:00.000000Z");
    assert!(spec["receivedTime"].is_string());
    let payload: Value = serde_json::from_str(spec["originalPayload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["labels"]["pod"], "api-7d9f8-x2x4q");
    // The status, initialised through the status subresource.
    let dedup = &calls[4].body["status"]["deduplication"];
    assert_eq!(dedup["occurrenceCount"], 1);
    assert_eq!(dedup["firstSeenAt"], dedup["lastSeenAt"]);
    // The lease is deleted only if it is still the one we created.
    assert_eq!(calls[5].body["preconditions"]["uid"], "uid-created");
}

// No API server can run here: kube's mock service plays its part.
#[tokio::test]
async fn a_duplicate_increments_the_occurrence_count_through_the_status_subresource() {
    let fp = deployment_fingerprint();
    let fp_text = fp.to_string();
    let name = format!("rr-{}-abcd1234", fp.prefix(12));
    let rr_path = format!("{RRS}/{name}");
    let status_path = format!("{rr_path}/status");
    let (n, f) = (name.clone(), fp_text.clone());
    let (client, log) = fake_api(
        move |call| match (call.method.as_str(), call.path.as_str()) {
            ("GET", RRS) => (
                200,
                // A completed request of the same fingerprint does not count.
                list(vec![
                    stored_rr("rr-old-completed", &f, "5", 7, Some("Completed")),
                    stored_rr(&n, &f, "8", 2, Some("Processing")),
                ]),
            ),
            ("GET", p) if p == rr_path => (200, stored_rr(&n, &f, "8", 2, Some("Processing"))),
            ("PUT", p) if p == status_path => (200, echo_with_version(call, "9")),
            _ => (404, status(404, "NotFound")),
        },
    );
    let backend = backend(client);
    let active = backend.find_active(&fp).await.unwrap().unwrap();
    assert_eq!(
        active,
        ActiveRequest {
            name: name.clone(),
            occurrence_count: 2
        }
    );
    let seen = Utc::now();
    let count = backend.record_occurrence(&active, seen).await.unwrap();
    assert_eq!(count, 3);

    let calls = log.lock().unwrap().clone();
    let put = calls.iter().find(|c| c.method == "PUT").unwrap();
    assert_eq!(put.path, format!("{RRS}/{name}/status"));
    // Optimistic concurrency: the update carries the version it was read at.
    assert_eq!(put.body["metadata"]["resourceVersion"], "8");
    let dedup = &put.body["status"]["deduplication"];
    assert_eq!(dedup["occurrenceCount"], 3);
    assert_eq!(dedup["firstSeenAt"], "2026-11-28T05:00:00Z");
    assert_ne!(dedup["lastSeenAt"], "2026-11-28T05:00:00Z");
    assert_eq!(put.body["status"]["overallPhase"], "Processing");
}

// No API server can run here: kube's mock service plays its part.
#[tokio::test]
async fn a_409_conflict_rereads_the_request_and_retries_the_update() {
    let fp = deployment_fingerprint();
    let name = format!("rr-{}-abcd1234", fp.prefix(12));
    let fp_text = fp.to_string();
    let (n, f) = (name.clone(), fp_text.clone());
    let mut reads = 0;
    let (client, log) = fake_api(move |call| match call.method.as_str() {
        "GET" => {
            reads += 1;
            // Between our first read and write another replica counted one more.
            let (rv, count) = if reads == 1 { ("8", 2) } else { ("9", 3) };
            (200, stored_rr(&n, &f, rv, count, None))
        }
        "PUT" => {
            if call.body["metadata"]["resourceVersion"] == "8" {
                (409, status(409, "Conflict"))
            } else {
                (200, echo_with_version(call, "10"))
            }
        }
        _ => (404, status(404, "NotFound")),
    });
    let active = ActiveRequest {
        name: name.clone(),
        occurrence_count: 2,
    };
    let count = backend(client)
        .record_occurrence(&active, Utc::now())
        .await
        .unwrap();
    assert_eq!(count, 4, "recomputed from the fresh read, not 3");
    let calls = log.lock().unwrap().clone();
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["GET", "PUT", "GET", "PUT"]);
    assert_eq!(
        calls[3].body["status"]["deduplication"]["occurrenceCount"],
        4
    );
    assert_eq!(calls[3].body["metadata"]["resourceVersion"], "9");
}

// No API server can run here: kube's mock service plays its part.
#[tokio::test]
async fn conflicts_past_the_retry_budget_are_reported_not_swallowed() {
    let fp = deployment_fingerprint();
    let name = format!("rr-{}-abcd1234", fp.prefix(12));
    let (n, f) = (name.clone(), fp.to_string());
    let (client, log) = fake_api(move |call| match call.method.as_str() {
        "GET" => (200, stored_rr(&n, &f, "8", 2, None)),
        _ => (409, status(409, "Conflict")),
    });
    let err = backend(client)
        .record_occurrence(
            &ActiveRequest {
                name,
                occurrence_count: 2,
            },
            Utc::now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Conflict(_)), "{err:?}");
    // One attempt plus `conflict_retries` (5) retries.
    let puts = log
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.method == "PUT")
        .count();
    assert_eq!(puts, 6);
}

// No API server can run here: kube's mock service plays its part.
#[tokio::test]
async fn a_lease_held_by_another_replica_is_waited_for_and_an_expired_one_taken_over() {
    let fp = deployment_fingerprint();
    let lease_name = format!("rr-lock-{}", fp.prefix(40));
    let held = |renew: String| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "x", "namespace": NS, "resourceVersion": "41", "uid": "other"},
            "spec": {"holderIdentity": "gateway-1", "leaseDurationSeconds": 15,
                     "renewTime": renew}})
    };
    // Expired: renewed an hour ago.
    let stale = (Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (client, log) = fake_api(move |call| match call.method.as_str() {
        "POST" => (409, status(409, "AlreadyExists")),
        "GET" => (200, held(stale.clone())),
        "PUT" => (200, echo_with_version(call, "42")),
        _ => (200, status(200, "Success")),
    });
    let lock = backend(client).lock(&fp).await.unwrap();
    lock.release().await;
    let calls = log.lock().unwrap().clone();
    let sequence: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(
        sequence,
        [
            format!("POST {LEASES}"),
            format!("GET {LEASES}/{lease_name}"),
            format!("PUT {LEASES}/{lease_name}"),
            format!("DELETE {LEASES}/{lease_name}"),
        ]
    );
    assert_eq!(calls[2].body["metadata"]["resourceVersion"], "41");
    assert_eq!(calls[2].body["spec"]["holderIdentity"], "gateway-0");

    // Held and fresh: the lock is not taken before the lease could expire.
    let fresh = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (client, _) = fake_api(move |call| match call.method.as_str() {
        "POST" => (409, status(409, "AlreadyExists")),
        _ => (200, held(fresh.clone())),
    });
    let err = backend(client).lock(&fp).await.unwrap_err();
    assert!(matches!(err, BackendError::LockTimeout(_)), "{err:?}");
}

// No API server can run here: kube's mock service plays its part.
#[tokio::test]
async fn readiness_needs_the_api_server_and_the_crd() {
    let (client, log) = fake_api(|_| (200, list(vec![])));
    backend(client).check_ready().await.unwrap();
    assert_eq!(log.lock().unwrap()[0].path, RRS);
    assert!(log.lock().unwrap()[0].query.contains("limit=1"));

    let (client, _) = fake_api(|_| (404, status(404, "NotFound")));
    let err = backend(client).check_ready().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("deploy/crds/remediationrequest.yaml"),
        "{err}"
    );

    let (client, _) = fake_api(|_| (503, status(503, "ServiceUnavailable")));
    let err = backend(client).check_ready().await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
}

// No API server can run here: kube's mock service plays its part.
#[tokio::test]
async fn a_refused_create_is_a_failure_with_its_code() {
    let (client, _) = fake_api(|call| match (call.method.as_str(), call.path.as_str()) {
        ("POST", RRS) => (422, status(422, "Invalid")),
        _ => (404, status(404, "NotFound")),
    });
    let s = signal();
    let fp = Fingerprint::of(None, &s.target);
    let request = NewRequest {
        name: "rr-x".into(),
        fingerprint: fp,
        target: s.target.clone(),
        signal: s,
    };
    let err = backend(client).create(&request).await.unwrap_err();
    assert_eq!(err.code(), "backend_rejected");
}
