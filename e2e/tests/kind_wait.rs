//! The Kind platform's waits and TokenRequests against kube's mock service.
//!
//! Every test here is a mock: no Kubernetes API server can run on the
//! machines this suite runs on, so a `tower-test` mock answers each request
//! the way the API server would, and tokio's paused clock makes the poll
//! interval and the deadlines pass instantly. Synchronisation is by request:
//! a wait that issues another request has not returned.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::platform::kind::stack::{PodSet, WorkloadKind};
use e2e::platform::kind::{tokens, wait};
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
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

fn label_selector(query: &[(String, String)]) -> Option<&str> {
    query
        .iter()
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.as_str())
}

fn respond(send: mock::SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    send.send_response(response);
}

/// Answers every request with `answer(path, query)` until the client is gone.
async fn serve(
    handle: Handle,
    mut answer: impl FnMut(&str, &[(String, String)]) -> (StatusCode, Value),
) {
    let mut handle = pin!(handle);
    while let Some((request, send)) = handle.next_request().await {
        let (path, query) = path_and_query(&request);
        let (status, body) = answer(&path, &query);
        respond(send, status, &body);
    }
}

/// Mock (no API server can run here): a Pod that is Ready is not enough —
/// the wait keeps polling while the EndpointSlice has no ready endpoint, and
/// returns only after a later answer shows one.
#[tokio::test(start_paused = true)]
async fn a_ready_pod_without_a_ready_endpoint_keeps_the_wait_going() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let pod_polls = Arc::new(AtomicUsize::new(0));
    let slice_polls = Arc::new(AtomicUsize::new(0));
    let (pods_seen, slices_seen) = (pod_polls.clone(), slice_polls.clone());
    let server = tokio::spawn(serve(handle, move |path, query| match path {
        "/api/v1/namespaces/kubernaut-system/pods" => {
            assert_eq!(
                label_selector(query),
                Some("app.kubernetes.io/name=datastorage")
            );
            pods_seen.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, pod_list(vec![pod(true, true, None)]))
        }
        "/apis/discovery.k8s.io/v1/namespaces/kubernaut-system/endpointslices" => {
            assert_eq!(
                label_selector(query),
                Some("kubernetes.io/service-name=data-storage-service")
            );
            // Not ready in the first two answers, ready in the third.
            let n = slices_seen.fetch_add(1, Ordering::SeqCst) + 1;
            (StatusCode::OK, slice_list(n >= 3))
        }
        other => panic!("unexpected request {other}"),
    }));

    let started = tokio::time::Instant::now();
    wait::serving(&client, &data_storage(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        slice_polls.load(Ordering::SeqCst),
        3,
        "returned only once the EndpointSlice had a ready endpoint"
    );
    assert_eq!(pod_polls.load(Ordering::SeqCst), 3);
    assert!(started.elapsed() < Duration::from_secs(60));
    server.abort();
}

/// Mock (no API server can run here): when the deadline passes, the error
/// names the workload and what its Pod looked like last — conditions and the
/// container's waiting reason.
#[tokio::test(start_paused = true)]
async fn a_timeout_names_the_object_and_its_last_conditions() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let server = tokio::spawn(serve(handle, |path, _| match path {
        "/api/v1/namespaces/kubernaut-system/pods" => (
            StatusCode::OK,
            pod_list(vec![pod(true, false, Some("CrashLoopBackOff"))]),
        ),
        "/apis/discovery.k8s.io/v1/namespaces/kubernaut-system/endpointslices" => {
            (StatusCode::OK, slice_list(false))
        }
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
/// `Initialized` condition — it holds before the Pod is Ready — and while it
/// does not, the wait reports the init container.
#[tokio::test(start_paused = true)]
async fn the_migration_wait_ends_at_initialized_and_names_the_init_container() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let server = tokio::spawn(serve(handle, move |_, _| {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        (StatusCode::OK, pod_list(vec![pod(n >= 2, false, None)]))
    }));
    wait::pods_condition(
        &client,
        &data_storage(),
        "Initialized",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    server.abort();

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

/// Mock (no API server can run here): API errors count as "not yet" and the
/// last one is what a timeout reports.
#[tokio::test(start_paused = true)]
async fn api_errors_are_retried_and_reported() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let server = tokio::spawn(serve(handle, |_, _| {
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
    server.abort();
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
            let body = json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": []},
                "status": {"token": format!("token-of-{sa}"), "expirationTimestamp": "2030-01-01T00:00:00Z"}
            });
            asked.push(sa);
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
    assert_eq!(asked, ["e2e-writer", "e2e-reader", "e2e-signal-sender"]);
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
