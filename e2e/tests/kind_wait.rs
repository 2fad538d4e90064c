//! The Kind platform's waits and TokenRequests against the shared fake API
//! server (`kube-fake`).
//!
//! No Kubernetes API server can run on the machines this suite runs on, so
//! `kube-fake` stands in: a real HTTP server on loopback, reached through the
//! production `kube::Client` stack (its retry layer, JSON and watch
//! decoding), with the API server's list/watch semantics — a LIST carries
//! `metadata.resourceVersion`, a WATCH resumes from it, a resume from a
//! compacted version is answered `410 Gone`, label and `metadata.name` field
//! selectors filter both. What the kubelet and the controllers would write
//! (Pod conditions, EndpointSlice readiness, a Deployment's
//! `status.observedGeneration`, a CRD's `Established`) the tests write
//! themselves with [`FakeApiServer::put`] / [`FakeApiServer::modify`], which
//! the open watches see as events.
//!
//! Synchronisation is by the fake's call log, never by sleeping: a kube-rs
//! watcher asks for its WATCH only after the wait has evaluated the LIST
//! before it, so "the WATCH is open" means "the wait has seen the list and
//! did not return". The clock is real (the fake's sockets do not run on
//! tokio's paused clock); deadlines are a few seconds where a test needs one
//! to pass.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::platform::kind::stack::{PodSet, WorkloadKind};
use e2e::platform::kind::{tokens, wait, workloads};
use kube_fake::{Call, FakeApiServer, Fault, FaultAction};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

const NS: &str = "kubernaut-system";
const PODS: &str = "/api/v1/namespaces/kubernaut-system/pods";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/kubernaut-system/endpointslices";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/kubernaut-system/deployments";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const POD: &str = "datastorage-7d9f-abcde";
const SLICE: &str = "data-storage-service-x1";

/// Long enough never to pass in a test that expects the wait to end first.
const NEVER: Duration = Duration::from_secs(30);

fn data_storage() -> PodSet {
    PodSet {
        kind: WorkloadKind::Deployment,
        namespace: NS.into(),
        name: "datastorage".into(),
        service: "data-storage-service".into(),
        selector: "app.kubernetes.io/name=datastorage".into(),
        replicas: 1,
        container: "datastorage".into(),
        init_containers: vec!["migrate".into()],
    }
}

fn gateway() -> PodSet {
    PodSet {
        kind: WorkloadKind::Deployment,
        namespace: NS.into(),
        name: "gateway".into(),
        service: "gateway-service".into(),
        selector: "app.kubernetes.io/name=gateway".into(),
        replicas: 1,
        container: "gateway".into(),
        init_containers: Vec::new(),
    }
}

/// A Pod of DataStorage with these condition statuses and main container
/// state, labelled as the Deployment's Pods are.
fn pod(initialized: bool, ready: bool, waiting: Option<&str>) -> Value {
    let flag = |b: bool| if b { "True" } else { "False" };
    let mut ready_condition = json!({"type": "Ready", "status": flag(ready)});
    if !ready {
        ready_condition["reason"] = json!("ContainersNotReady");
        ready_condition["message"] = json!("containers with unready status: [datastorage]");
    }
    let state = match waiting {
        Some(reason) => {
            json!({"waiting": {"reason": reason, "message": "back-off 10s restarting failed container"}})
        }
        None => json!({"running": {}}),
    };
    let last_state = match waiting {
        Some(_) => json!({"terminated": {"exitCode": 2, "reason": "Error"}}),
        None => json!({}),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD, "namespace": NS,
                     "labels": {"app.kubernetes.io/name": "datastorage"}},
        "spec": {"containers": [{"name": "datastorage"}]},
        "status": {
            "phase": if initialized { "Running" } else { "Pending" },
            "conditions": [
                {"type": "Initialized", "status": flag(initialized)},
                ready_condition,
            ],
            "containerStatuses": [{
                "name": "datastorage", "ready": ready, "restartCount": if waiting.is_some() { 4 } else { 0 },
                "image": "localhost/kubernaut/datastorage:e2e", "imageID": "", "state": state,
                "lastState": last_state
            }]
        }
    })
}

/// A Gateway Pod whose main container has (not) started.
fn gateway_pod(name: &str, started: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/name": "gateway"}},
        "spec": {"containers": [{"name": "gateway"}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "gateway", "ready": false, "restartCount": 0, "started": started,
            "image": "localhost/kubernaut/gateway:e2e", "imageID": "", "state": {"running": {}}
        }]}
    })
}

/// DataStorage's EndpointSlice with one endpoint, ready or not.
fn slice(ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": SLICE, "namespace": NS,
                     "labels": {"kubernetes.io/service-name": "data-storage-service"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": ready, "serving": ready}}]
    })
}

fn object(collection: &str, name: &str) -> String {
    format!("{collection}/{name}")
}

/// A fake holding `objects` (collection path, object), stored as the
/// controllers would have written them.
async fn fake_with(objects: &[(&str, Value)]) -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    for (collection, o) in objects {
        let name = o["metadata"]["name"].as_str().expect("objects are named");
        fake.put(&object(collection, name), o.clone());
    }
    fake
}

fn is_watch_of(resource: &'static str) -> impl Fn(&Call) -> bool {
    move |c| c.verb == "watch" && c.resource == resource
}

/// The value of query parameter `name` of `call`, decoded.
fn param(call: &Call, name: &str) -> Option<String> {
    url::form_urlencoded::parse(call.query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Resolves once a call matching `matching` is logged; fails the test if
/// `wait` ends first (it should still be waiting).
async fn still_waiting<T: std::fmt::Debug>(
    fake: &FakeApiServer,
    wait: &mut JoinHandle<T>,
    what: &str,
    matching: impl Fn(&Call) -> bool,
) {
    tokio::select! {
        () = fake.wait_for_call(matching) => {}
        ended = &mut *wait => panic!("the wait ended before {what}: {ended:?}"),
        () = tokio::time::sleep(NEVER) => panic!("no {what} within {NEVER:?}"),
    }
    assert!(!wait.is_finished(), "the wait ended before {what}");
}

/// Awaits `wait`, which must end within [`NEVER`].
async fn ends<T>(wait: JoinHandle<T>) -> T {
    tokio::time::timeout(NEVER, wait)
        .await
        .expect("the wait ends once its condition holds")
        .expect("the wait does not panic")
}

/// A ready Pod is not enough: the wait has evaluated both initial lists (Pod
/// Ready, endpoint not ready) — both watchers opened their WATCH — and keeps
/// waiting; the EndpointSlice controller's later write (a watch event) ends it.
#[tokio::test]
async fn a_ready_pod_without_a_ready_endpoint_keeps_the_wait_going() {
    let fake = fake_with(&[(PODS, pod(true, true, None)), (SLICES, slice(false))]).await;
    let client = fake.client();
    let mut wait =
        tokio::spawn(async move { wait::serving(&client, &data_storage(), NEVER).await });

    still_waiting(
        &fake,
        &mut wait,
        "the Pod watch opened",
        is_watch_of("pods"),
    )
    .await;
    still_waiting(
        &fake,
        &mut wait,
        "the EndpointSlice watch opened",
        is_watch_of("endpointslices"),
    )
    .await;
    // Each watch selects what the wait is about, from its list's version.
    let calls = fake.calls();
    for (resource, selector) in [
        ("pods", "app.kubernetes.io/name=datastorage"),
        (
            "endpointslices",
            "kubernetes.io/service-name=data-storage-service",
        ),
    ] {
        let watch = calls.iter().find(|c| is_watch_of(resource)(c)).unwrap();
        assert_eq!(param(watch, "labelSelector").as_deref(), Some(selector));
        assert!(param(watch, "resourceVersion").is_some(), "{watch:?}");
        assert_eq!(fake.count("list", Some(resource)), 1, "{resource}");
    }

    fake.modify(&object(SLICES, SLICE), |s| *s = slice(true));
    ends(wait).await.unwrap();
}

/// When the deadline passes, the error names the workload and what its Pod
/// looked like last — conditions and the container's waiting reason — and
/// the endpoints, while both watches stayed open.
#[tokio::test]
async fn a_timeout_names_the_object_and_its_last_conditions() {
    let fake = fake_with(&[
        (PODS, pod(true, false, Some("CrashLoopBackOff"))),
        (SLICES, slice(false)),
    ])
    .await;
    let deadline = Duration::from_secs(2);
    let started = Instant::now();
    let err = wait::serving(&fake.client(), &data_storage(), deadline)
        .await
        .unwrap_err();
    assert!(started.elapsed() >= deadline);
    assert_eq!(err.object, "Deployment kubernaut-system/datastorage");
    let text = err.to_string();
    assert!(text.contains("timed out after 2.0s"), "{text}");
    for expected in [
        "Pod datastorage-7d9f-abcde",
        "Ready=False (ContainersNotReady: containers with unready status: [datastorage])",
        "datastorage: waiting CrashLoopBackOff",
        "last exit 2 (Error)",
        "4 restarts",
        "0 of 1 endpoints ready",
    ] {
        assert!(
            err.last_observed.contains(expected),
            "{expected:?} in {text}"
        );
    }
    // One list and one open watch each: the wait followed events, it did not poll.
    assert_eq!(fake.count("list", Some("pods")), 1);
    assert_eq!(fake.count("watch", Some("pods")), 1);
}

/// "Migrations done" is the Pod's `Initialized` condition — it holds before
/// the Pod is Ready — so the wait ends at the kubelet's write that shows it;
/// while it does not hold, a timeout names the init container.
#[tokio::test]
async fn the_migration_wait_ends_at_initialized_and_names_the_init_container() {
    let fake = fake_with(&[(PODS, pod(false, false, None))]).await;
    let client = fake.client();
    let mut wait = tokio::spawn(async move {
        wait::pods_condition(&client, &data_storage(), "Initialized", NEVER).await
    });
    still_waiting(
        &fake,
        &mut wait,
        "the Pod watch opened",
        is_watch_of("pods"),
    )
    .await;
    fake.modify(&object(PODS, POD), |p| *p = pod(true, false, None));
    ends(wait).await.unwrap();

    fake.modify(&object(PODS, POD), |p| *p = pod(false, false, None));
    let err = wait::pods_condition(
        &fake.client(),
        &data_storage(),
        "Initialized",
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(err.goal.contains("init containers migrate"), "{err}");
    assert!(err.last_observed.contains("Initialized=False"), "{err}");
}

/// API errors do not end the wait — the watcher LISTs again after kube's
/// backoff (0.8–1.6 s first) — and the last one is what a timeout reports.
#[tokio::test]
async fn api_errors_are_retried_and_reported() {
    let fake = fake_with(&[(PODS, pod(true, true, None))]).await;
    fake.inject(
        Fault::new(
            FaultAction::Fail {
                code: 403,
                retry_after: None,
            },
            usize::MAX,
        )
        .verb("list")
        .resource("pods"),
    );
    let err = wait::pods_gone(&fake.client(), &data_storage(), Duration::from_millis(2500))
        .await
        .unwrap_err();
    assert!(err.last_observed.contains("403"), "{err}");
    assert!(err.last_observed.contains("injected 403"), "{err}");
    let lists = fake.count("list", Some("pods"));
    assert!(lists >= 2, "retried: {lists} lists");
}

/// A watch that must resume from a compacted version gets `410 Gone`; that
/// does not end the wait: the watcher LISTs again and the wait ends on what
/// that list shows. The Pod is deleted (and the history compacted) while the
/// watch after the first list is held before it is served, so no watch event
/// ever reports the deletion: only the re-list can.
#[tokio::test]
async fn a_gone_watch_relists_and_keeps_waiting() {
    let fake = fake_with(&[(PODS, pod(true, true, None))]).await;
    fake.inject(
        Fault::new(FaultAction::Delay(Duration::from_secs(2)), 1)
            .verb("watch")
            .resource("pods"),
    );
    let client = fake.client();
    let mut wait =
        tokio::spawn(async move { wait::pods_gone(&client, &data_storage(), NEVER).await });
    still_waiting(&fake, &mut wait, "the Pod list answered", |c: &Call| {
        c.verb == "list" && c.resource == "pods"
    })
    .await;
    fake.remove(&object(PODS, POD));
    fake.compact();
    ends(wait).await.unwrap();
    let verbs: Vec<&str> = fake
        .calls()
        .iter()
        .filter(|c| c.resource == "pods")
        .map(|c| c.verb)
        .collect();
    assert_eq!(verbs, ["list", "watch", "list"], "a LIST after 410 Gone");
}

/// A Deployment whose controller has observed generation `observed`.
fn gateway_deployment(observed: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "gateway", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "gateway"}},
                "spec": {"containers": [{"name": "gateway", "image": "localhost/kubernaut/gateway:e2e"}]}
            }
        },
        "status": {"observedGeneration": observed, "replicas": 1}
    })
}

/// The rollout wait: patching the Pod template bumps the Deployment's
/// `metadata.generation` (what [`workloads::patch_workload`] returns), and
/// the wait holds until the controller's status write reports that
/// generation as observed; an older one is what a timeout names.
#[tokio::test]
async fn the_rollout_waits_for_the_deployment_status_to_observe_the_patch() {
    let fake = fake_with(&[(DEPLOYMENTS, gateway_deployment(1))]).await;
    let client = fake.client();
    let patch = workloads::gateway_url_patch(&gateway(), Some("http://x:8080"), "t1");
    let generation = workloads::patch_workload(&client, &gateway(), patch)
        .await
        .unwrap();
    assert_eq!(generation, 2, "a template change is a new generation");
    let patched = fake.calls().pop().unwrap();
    assert_eq!(
        patched.header("content-type"),
        Some("application/strategic-merge-patch+json")
    );

    let mut wait = tokio::spawn({
        let client = client.clone();
        async move { wait::generation_observed(&client, &gateway(), generation, NEVER).await }
    });
    still_waiting(
        &fake,
        &mut wait,
        "the Deployment watch opened",
        is_watch_of("deployments"),
    )
    .await;
    let watch = fake
        .calls()
        .into_iter()
        .find(|c| is_watch_of("deployments")(c))
        .unwrap();
    assert_eq!(
        param(&watch, "fieldSelector").as_deref(),
        Some("metadata.name=gateway")
    );
    fake.modify(&object(DEPLOYMENTS, "gateway"), |d| {
        d["status"]["observedGeneration"] = json!(2)
    });
    ends(wait).await.unwrap();

    let err = wait::generation_observed(&client, &gateway(), 3, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.goal.contains("generation 3"), "{err}");
    assert!(err.last_observed.contains("observedGeneration 2"), "{err}");
}

/// A restart's two waits: the old Pods gone (by uid, not by name — a
/// StatefulSet's replacement keeps the name), then a new Pod whose main
/// container has started; its name is the answer.
#[tokio::test]
async fn a_restart_waits_for_the_old_pods_to_go_and_a_new_container_to_start() {
    let fake = fake_with(&[(PODS, gateway_pod("gateway-0", true))]).await;
    let client = fake.client();
    let old = workloads::pod_uids(&client, &gateway()).await.unwrap();
    assert_eq!(old.len(), 1);

    let mut replaced = tokio::spawn({
        let (client, old) = (client.clone(), old.clone());
        async move { wait::pods_replaced(&client, &gateway(), &old, NEVER).await }
    });
    still_waiting(
        &fake,
        &mut replaced,
        "the Pod watch opened",
        is_watch_of("pods"),
    )
    .await;
    // The same name, a new object: the old uid is gone.
    fake.remove(&object(PODS, "gateway-0"));
    fake.put(&object(PODS, "gateway-0"), gateway_pod("gateway-0", false));
    ends(replaced).await.unwrap();

    fake.reset_calls();
    let mut started = tokio::spawn({
        let client = client.clone();
        async move { wait::container_started(&client, &gateway(), &old, NEVER).await }
    });
    still_waiting(
        &fake,
        &mut started,
        "the Pod watch opened",
        is_watch_of("pods"),
    )
    .await;
    fake.modify(&object(PODS, "gateway-0"), |p| {
        p["status"]["containerStatuses"][0]["started"] = json!(true)
    });
    assert_eq!(ends(started).await.unwrap(), "gateway-0");
}

/// The CRD wait follows the one CRD by name until `Established=True`.
#[tokio::test]
async fn the_crd_wait_ends_at_established() {
    let name = "remediationrequests.kubernaut.ai";
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {"group": "kubernaut.ai", "scope": "Namespaced",
                 "names": {"plural": "remediationrequests", "kind": "RemediationRequest"},
                 "versions": []},
        "status": {"conditions": [{"type": "NamesAccepted", "status": "True"},
                                  {"type": "Established", "status": "False", "reason": "Installing"}]}
    });
    let fake = fake_with(&[(CRDS, crd)]).await;
    let client = fake.client();
    let mut wait = tokio::spawn(async move { wait::crd_established(&client, name, NEVER).await });
    still_waiting(
        &fake,
        &mut wait,
        "the CRD watch opened",
        is_watch_of("customresourcedefinitions"),
    )
    .await;
    fake.modify(&object(CRDS, name), |c| {
        c["status"]["conditions"][1] = json!({"type": "Established", "status": "True"})
    });
    ends(wait).await.unwrap();
}

/// One TokenRequest per test caller, on the ServiceAccount's `token`
/// subresource, each bound to the audience of the service it calls; the
/// tokens are what the API answered.
#[tokio::test]
async fn tokens_come_from_the_token_request_api() {
    let fake = FakeApiServer::start().await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    fake.respond_to_create("serviceaccounts/token", move |request| {
        let sa = request["metadata"]["name"].as_str().unwrap().to_owned();
        seen.lock()
            .unwrap()
            .push((sa.clone(), request["spec"]["audiences"].clone()));
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": []},
            "status": {"token": format!("token-of-{sa}"), "expirationTimestamp": "2030-01-01T00:00:00Z"}
        });
        (201, body)
    });
    let t = tokens::request_tokens(&fake.client(), NS).await.unwrap();
    assert_eq!(t.writer, "token-of-e2e-writer");
    assert_eq!(t.reader, "token-of-e2e-reader");
    assert_eq!(t.signal_sender, "token-of-e2e-signal-sender");
    assert!(
        !format!("{t:?}").contains("token-of"),
        "tokens stay out of Debug"
    );
    assert_eq!(
        *asked.lock().unwrap(),
        [
            ("e2e-writer".to_owned(), json!(["data-storage-service"])),
            ("e2e-reader".to_owned(), json!(["data-storage-service"])),
            ("e2e-signal-sender".to_owned(), json!(["gateway-service"])),
        ]
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        assert_eq!(
            (call.verb, call.subresource.as_deref()),
            ("create", Some("token"))
        );
        assert!(call
            .path
            .starts_with("/api/v1/namespaces/kubernaut-system/serviceaccounts/"));
    }
}

/// A missing ServiceAccount is an error naming it and the manifest that
/// defines it.
#[tokio::test]
async fn a_failed_token_request_names_the_service_account() {
    let fake = FakeApiServer::start().await;
    fake.respond_to_create("serviceaccounts/token", |request| {
        let sa = request["metadata"]["name"].as_str().unwrap_or("?");
        (
            404,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                   "message": format!("serviceaccounts \"{sa}\" not found"), "reason": "NotFound", "code": 404}),
        )
    });
    let err = tokens::request_tokens(&fake.client(), NS)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ServiceAccount kubernaut-system/e2e-writer"),
        "{err}"
    );
    assert!(err.contains("e2e-clients.yaml"), "{err}");
}
