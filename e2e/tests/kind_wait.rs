//! The Kind platform's waits and TokenRequests against kube's mock service.
//!
//! Every test here is a mock: no Kubernetes API server can run on the
//! machines this suite runs on, so a `tower-test` mock answers each request
//! the way the API server would, and tokio's paused clock makes the backoff
//! and the deadlines pass instantly.
//!
//! The waits are kube-rs watchers: each first LISTs (answered with a List
//! carrying `metadata.resourceVersion`), then WATCHes from that version
//! (`watch=true&resourceVersion=…`). A WATCH is answered with
//! newline-delimited watch events, or held unanswered — an open watch with
//! nothing to report. Synchronisation is by request: a watcher asks for its
//! WATCH only after the wait has evaluated its LIST, and a wait that issues
//! another request has not returned.

use std::fmt::Debug;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::platform::kind::stack::{PodSet, WorkloadKind};
use e2e::platform::kind::{tokens, wait};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn data_storage() -> PodSet {
    PodSet {
        kind: WorkloadKind::Deployment,
        namespace: "kubernaut-system".into(),
        name: "datastorage".into(),
        service: "data-storage-service".into(),
        selector: "app.kubernetes.io/name=datastorage".into(),
        replicas: 1,
        container: "datastorage".into(),
        init_containers: vec!["migrate".into()],
    }
}

/// A Pod of DataStorage with these condition statuses and main container state.
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
        "metadata": {"name": "datastorage-7d9f-abcde", "namespace": "kubernaut-system", "uid": "u1"},
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

fn pod_list(pods: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": pods})
}

fn slice_list(ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {"resourceVersion": "1"},
        "items": [{
            "metadata": {"name": "data-storage-service-x1", "namespace": "kubernaut-system",
                         "labels": {"kubernetes.io/service-name": "data-storage-service"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": ready, "serving": ready}}]
        }]
    })
}

/// The request's path and its decoded query parameters.
fn path_and_query(request: &Request<Body>) -> (String, Vec<(String, String)>) {
    let url = url::Url::parse(&format!("http://api{}", request.uri())).unwrap();
    let query = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (url.path().to_owned(), query)
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn label_selector(query: &[(String, String)]) -> Option<&str> {
    param(query, "labelSelector")
}

fn is_watch(query: &[(String, String)]) -> bool {
    param(query, "watch") == Some("true")
}

fn respond(send: mock::SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    respond_bytes(send, status, serde_json::to_vec(body).unwrap());
}

fn respond_bytes(send: mock::SendResponse<Response<Body>>, status: StatusCode, body: Vec<u8>) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    send.send_response(response);
}

/// A watch event; the object gets a `resourceVersion` (watchers require one).
fn event(kind: &str, mut object: Value) -> Value {
    if object["metadata"]["resourceVersion"].is_null() {
        object["metadata"]["resourceVersion"] = json!("2");
    }
    json!({"type": kind, "object": object})
}

/// Answers a WATCH with these events, one JSON document per line; the
/// response ends after them, as a server-side watch timeout would end it.
fn respond_events(send: mock::SendResponse<Response<Body>>, events: &[Value]) {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    respond_bytes(send, StatusCode::OK, body);
}

/// Answers every LIST (and other non-watch request) with
/// `answer(path, query)` until the client is gone. WATCH requests are held
/// open without events.
async fn serve(
    handle: Handle,
    mut answer: impl FnMut(&str, &[(String, String)]) -> (StatusCode, Value),
) {
    let mut handle = pin!(handle);
    let mut open_watches = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        let (path, query) = path_and_query(&request);
        if is_watch(&query) {
            open_watches.push(send);
            continue;
        }
        let (status, body) = answer(&path, &query);
        respond(send, status, &body);
    }
}

/// One request to the mock API.
struct Call {
    path: String,
    query: Vec<(String, String)>,
    send: mock::SendResponse<Response<Body>>,
}

/// The next request, for a test that answers requests itself while `wait`
/// runs; fails the test if the wait ends first (it would not have ended).
async fn next_call<T: Debug>(handle: &mut Pin<Box<Handle>>, wait: &mut JoinHandle<T>) -> Call {
    tokio::select! {
        request = handle.next_request() => {
            let (request, send) = request.expect("the client is still there");
            let (path, query) = path_and_query(&request);
            Call { path, query, send }
        }
        ended = wait => panic!("the wait ended while it should still be waiting: {ended:?}"),
    }
}

const PODS: &str = "/api/v1/namespaces/kubernaut-system/pods";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/kubernaut-system/endpointslices";

/// Mock (no API server can run here): a Pod that is Ready is not enough —
/// the wait has seen both initial lists (Pod Ready, endpoint not ready) and
/// keeps watching, and returns only after a later EndpointSlice watch event
/// shows a ready endpoint.
#[tokio::test(start_paused = true)]
async fn a_ready_pod_without_a_ready_endpoint_keeps_the_wait_going() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut handle = Box::pin(handle);
    let client = Client::new(service, "default");
    let mut wait = tokio::spawn(async move {
        wait::serving(&client, &data_storage(), Duration::from_secs(60)).await
    });
    let started = tokio::time::Instant::now();

    // Both LISTs, then both WATCHes, in whatever order the merged streams ask.
    let mut slice_watch = None;
    let mut pod_watch = None;
    let (mut pod_lists, mut slice_lists) = (0, 0);
    while slice_watch.is_none() || pod_watch.is_none() {
        let call = next_call(&mut handle, &mut wait).await;
        let expected_selector = match call.path.as_str() {
            PODS => "app.kubernetes.io/name=datastorage",
            SLICES => "kubernetes.io/service-name=data-storage-service",
            other => panic!("unexpected request {other}"),
        };
        assert_eq!(label_selector(&call.query), Some(expected_selector));
        match (call.path.as_str(), is_watch(&call.query)) {
            (PODS, false) => {
                pod_lists += 1;
                respond(
                    call.send,
                    StatusCode::OK,
                    &pod_list(vec![pod(true, true, None)]),
                );
            }
            (SLICES, false) => {
                slice_lists += 1;
                respond(call.send, StatusCode::OK, &slice_list(false));
            }
            (PODS, true) => pod_watch = Some(call),
            (_, true) => slice_watch = Some(call),
            _ => unreachable!(),
        }
    }
    // Each watcher WATCHes only after the wait evaluated its LIST: the wait
    // saw the Ready Pod and the not-ready endpoint, and did not return.
    assert_eq!((pod_lists, slice_lists), (1, 1));
    let slice_watch = slice_watch.unwrap();
    assert_eq!(param(&slice_watch.query, "resourceVersion"), Some("1"));
    assert!(!wait.is_finished());

    let ready_slice = slice_list(true)["items"][0].clone();
    respond_events(slice_watch.send, &[event("MODIFIED", ready_slice)]);
    wait.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    drop(pod_watch);
}

/// Mock (no API server can run here): when the deadline passes, the error
/// names the workload and what its Pod looked like last — conditions and the
/// container's waiting reason — while both watches stayed open.
#[tokio::test(start_paused = true)]
async fn a_timeout_names_the_object_and_its_last_conditions() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let server = tokio::spawn(serve(handle, |path, _| match path {
        PODS => (
            StatusCode::OK,
            pod_list(vec![pod(true, false, Some("CrashLoopBackOff"))]),
        ),
        SLICES => (StatusCode::OK, slice_list(false)),
        other => panic!("unexpected request {other}"),
    }));

    let started = tokio::time::Instant::now();
    let err = wait::serving(&client, &data_storage(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(err.object, "Deployment kubernaut-system/datastorage");
    let text = err.to_string();
    assert!(text.contains("timed out after 30.0s"), "{text}");
    assert!(
        text.contains("Deployment kubernaut-system/datastorage"),
        "{text}"
    );
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
    server.abort();
}

/// Mock (no API server can run here): "migrations done" is the Pod's
/// `Initialized` condition — it holds before the Pod is Ready — so the wait
/// ends at the watch event that shows it; while it does not hold, the wait
/// reports the init container.
#[tokio::test(start_paused = true)]
async fn the_migration_wait_ends_at_initialized_and_names_the_init_container() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut handle = Box::pin(handle);
    let client = Client::new(service, "default");
    let mut wait = tokio::spawn(async move {
        wait::pods_condition(
            &client,
            &data_storage(),
            "Initialized",
            Duration::from_secs(60),
        )
        .await
    });
    let list = next_call(&mut handle, &mut wait).await;
    assert_eq!((list.path.as_str(), is_watch(&list.query)), (PODS, false));
    respond(
        list.send,
        StatusCode::OK,
        &pod_list(vec![pod(false, false, None)]),
    );
    let watch = next_call(&mut handle, &mut wait).await;
    assert_eq!((watch.path.as_str(), is_watch(&watch.query)), (PODS, true));
    assert_eq!(
        label_selector(&watch.query),
        Some("app.kubernetes.io/name=datastorage")
    );
    respond_events(watch.send, &[event("MODIFIED", pod(true, false, None))]);
    wait.await.unwrap().unwrap();

    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let server = tokio::spawn(serve(handle, |_, _| {
        (StatusCode::OK, pod_list(vec![pod(false, false, None)]))
    }));
    let err = wait::pods_condition(
        &client,
        &data_storage(),
        "Initialized",
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(err.goal.contains("init containers migrate"), "{err}");
    assert!(err.last_observed.contains("Initialized=False"), "{err}");
    server.abort();
}

/// Mock (no API server can run here): API errors do not end the wait — the
/// watcher LISTs again after a backoff — and the last one is what a timeout
/// reports.
#[tokio::test(start_paused = true)]
async fn api_errors_are_retried_and_reported() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let lists = Arc::new(AtomicUsize::new(0));
    let seen = lists.clone();
    let server = tokio::spawn(serve(handle, move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
        (
            StatusCode::FORBIDDEN,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                   "message": "pods is forbidden", "reason": "Forbidden", "code": 403}),
        )
    }));
    let err = wait::pods_gone(&client, &data_storage(), Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(err.last_observed.contains("pods is forbidden"), "{err}");
    assert!(lists.load(Ordering::SeqCst) >= 2, "retried");
    server.abort();
}

/// Mock (no API server can run here): a watch that fails with `410 Gone`
/// does not end the wait; the watcher LISTs again and the wait ends on what
/// that list shows.
#[tokio::test(start_paused = true)]
async fn a_gone_watch_relists_and_keeps_waiting() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut handle = Box::pin(handle);
    let client = Client::new(service, "default");
    let mut wait = tokio::spawn(async move {
        wait::pods_gone(&client, &data_storage(), Duration::from_secs(60)).await
    });
    let list = next_call(&mut handle, &mut wait).await;
    assert!(!is_watch(&list.query));
    respond(
        list.send,
        StatusCode::OK,
        &pod_list(vec![pod(true, true, None)]),
    );
    let watch = next_call(&mut handle, &mut wait).await;
    assert!(is_watch(&watch.query));
    let gone = json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                      "message": "too old resource version: 1 (7)", "reason": "Expired", "code": 410});
    respond_events(watch.send, &[json!({"type": "ERROR", "object": gone})]);
    let relist = next_call(&mut handle, &mut wait).await;
    assert!(!is_watch(&relist.query), "a LIST after 410 Gone");
    respond(relist.send, StatusCode::OK, &pod_list(vec![]));
    wait.await.unwrap().unwrap();
}

/// Mock (no API server can run here): one TokenRequest per test caller, on
/// the ServiceAccount's `token` subresource; the tokens are what the API
/// answered.
#[tokio::test]
async fn tokens_come_from_the_token_request_api() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let mut asked = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            assert_eq!(request.method(), http::Method::POST);
            let (path, _) = path_and_query(&request);
            let sa = path
                .strip_prefix("/api/v1/namespaces/kubernaut-system/serviceaccounts/")
                .and_then(|p| p.strip_suffix("/token"))
                .unwrap_or_else(|| panic!("unexpected request {path}"))
                .to_owned();
            let sent: Value =
                serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap())
                    .unwrap();
            let audiences = sent["spec"]["audiences"].clone();
            let body = json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": []},
                "status": {"token": format!("token-of-{sa}"), "expirationTimestamp": "2030-01-01T00:00:00Z"}
            });
            asked.push((sa, audiences));
            respond(send, StatusCode::CREATED, &body);
        }
        asked
    });
    let t = tokens::request_tokens(&client, "kubernaut-system")
        .await
        .unwrap();
    assert_eq!(t.writer, "token-of-e2e-writer");
    assert_eq!(t.reader, "token-of-e2e-reader");
    assert_eq!(t.signal_sender, "token-of-e2e-signal-sender");
    assert!(
        !format!("{t:?}").contains("token-of"),
        "tokens stay out of Debug"
    );
    drop(client);
    let asked = server.await.unwrap();
    // Each token is bound to the audience of the service it calls.
    assert_eq!(
        asked,
        [
            ("e2e-writer".to_owned(), json!(["data-storage-service"])),
            ("e2e-reader".to_owned(), json!(["data-storage-service"])),
            ("e2e-signal-sender".to_owned(), json!(["gateway-service"])),
        ]
    );
}

/// Mock (no API server can run here): a missing ServiceAccount is an error
/// naming it and the manifest that defines it.
#[tokio::test]
async fn a_failed_token_request_names_the_service_account() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let server = tokio::spawn(serve(handle, |_, _| {
        (
            StatusCode::NOT_FOUND,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                   "message": "serviceaccounts \"e2e-writer\" not found", "reason": "NotFound", "code": 404}),
        )
    }));
    let err = tokens::request_tokens(&client, "kubernaut-system")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ServiceAccount kubernaut-system/e2e-writer"),
        "{err}"
    );
    assert!(err.contains("e2e-clients.yaml"), "{err}");
    server.abort();
}
