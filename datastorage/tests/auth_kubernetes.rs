//! Kubernetes-mode authentication against a local server that speaks the
//! TokenReview and SubjectAccessReview APIs.
//!
//! No Kubernetes API server can run on these machines, so this stand-in plays
//! its part on loopback: it answers the two review endpoints the way the real
//! API does and records every review it receives, so the tests can check what
//! DataStorage asked and how often.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use auth::AuthMode;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};

const SA_TOKEN: &str = "sa-token-0123456789abcdef";
const SA_USER: &str = "system:serviceaccount:kubernaut-system:gateway";
/// A reader bound to a role written for the reference platform: `get` only.
const READER_TOKEN: &str = "reader-token-0123456789abcdef";
const READER_USER: &str = "system:serviceaccount:kubernaut-system:auditor";

#[derive(Clone, Default)]
struct Reviews {
    tokens: Arc<Mutex<Vec<Value>>>,
    access: Arc<Mutex<Vec<Value>>>,
}

async fn token_review(
    axum::extract::State(r): axum::extract::State<Reviews>,
    Json(body): Json<Value>,
) -> Json<Value> {
    r.tokens.lock().unwrap().push(body.clone());
    let user = match body["spec"]["token"].as_str() {
        Some(SA_TOKEN) => Some(SA_USER),
        Some(READER_TOKEN) => Some(READER_USER),
        _ => None,
    };
    let mut status = json!({ "authenticated": user.is_some() });
    if let Some(user) = user {
        // The token was issued for the audience asked (an audience-aware server).
        status["audiences"] = body["spec"]["audiences"].clone();
        status["user"] = json!({ "username": user, "groups": ["system:serviceaccounts"] });
    }
    Json(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {},
        "spec": body["spec"],
        "status": status,
    }))
}

async fn access_review(
    axum::extract::State(r): axum::extract::State<Reviews>,
    Json(body): Json<Value>,
) -> Json<Value> {
    r.access.lock().unwrap().push(body.clone());
    // The gateway's ServiceAccount may write, not query; the auditor may `get`.
    let verb = &body["spec"]["resourceAttributes"]["verb"];
    let allowed = match body["spec"]["user"].as_str() {
        Some(SA_USER) => verb == "create",
        Some(READER_USER) => verb == "get",
        _ => false,
    };
    Json(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "metadata": {},
        "spec": body["spec"],
        "status": { "allowed": allowed },
    }))
}

async fn start_review_server() -> (SocketAddr, Reviews, tokio::task::JoinHandle<()>) {
    let reviews = Reviews::default();
    let app = Router::new()
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(token_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(access_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(|Json(body): Json<Value>| async move {
                Json(json!({"apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview", "metadata": {},
                    "spec": body["spec"], "status": {"allowed": true}}))
            }),
        )
        .with_state(reviews.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, reviews, task)
}

async fn spawn_kubernetes_app(api: SocketAddr) -> TestApp {
    spawn_app_with(|c| {
        c.auth.mode = AuthMode::Kubernetes;
        c.auth.namespace = Some("kubernaut-system".into());
        c.auth.api_server_url = Some(format!("http://{api}"));
        c.auth.cache_ttl = std::time::Duration::from_secs(300);
    })
    .await
}

#[tokio::test]
async fn reviews_name_the_user_verb_and_service_and_are_cached_per_token_and_verb() {
    let (api, reviews, _server) = start_review_server().await;
    let app = spawn_kubernetes_app(api).await;

    for i in 0..1000 {
        let resp = app
            .client
            .post(app.url("/api/v1/audit/events"))
            .bearer_auth(SA_TOKEN)
            .json(&event("corr-k8s", i))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let resp = app
        .client
        .get(app.url("/api/v1/audit/events?correlation_id=corr-k8s"))
        .bearer_auth(SA_TOKEN)
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 403, "forbidden").await;
    assert!(body["detail"].as_str().unwrap().contains(SA_USER));

    let tokens = reviews.tokens.lock().unwrap().clone();
    let access = reviews.access.lock().unwrap().clone();
    assert_eq!(
        tokens.len(),
        1,
        "one TokenReview for 1,001 requests with one token"
    );
    assert_eq!(tokens[0]["spec"]["token"], SA_TOKEN);
    assert_eq!(
        access.len(),
        3,
        "one SubjectAccessReview per verb: create, then list and get for the query"
    );
    let attributes: Vec<(&Value, &Value)> = access
        .iter()
        .map(|a| (&a["spec"]["user"], &a["spec"]["resourceAttributes"]))
        .collect();
    for (user, attrs) in &attributes {
        assert_eq!(*user, SA_USER);
        assert_eq!(attrs["resource"], "services");
        assert_eq!(attrs["name"], "data-storage-service");
        assert_eq!(attrs["namespace"], "kubernaut-system");
        assert_eq!(attrs["group"], "");
    }
    let verbs: Vec<&Value> = attributes.iter().map(|(_, a)| &a["verb"]).collect();
    assert_eq!(verbs, [&json!("create"), &json!("list"), &json!("get")]);
}

/// The reference platform's readers are granted `get` only (its client role
/// and its GET → `get` mapping): every read route accepts them, and they
/// still cannot write.
#[tokio::test]
async fn a_reader_granted_only_get_can_query_verify_and_export() {
    let (api, _reviews, _server) = start_review_server().await;
    let app = spawn_kubernetes_app(api).await;
    let corr = "corr-get-only";
    let resp = app
        .client
        .post(app.url("/api/v1/audit/events/batch"))
        .bearer_auth(SA_TOKEN)
        .json(&events(corr, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let get = |path: String| {
        app.client
            .get(app.url(&path))
            .bearer_auth(READER_TOKEN)
            .send()
    };

    let resp = get(format!("/api/v1/audit/events?correlation_id={corr}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "query");
    let page: Value = resp.json().await.unwrap();
    assert_eq!(page["pagination"]["total"], 3, "{page}");
    let id = page["data"][0]["event_id"].as_str().unwrap().to_owned();
    let resp = get(format!("/api/v1/audit/events/{id}")).await.unwrap();
    assert_eq!(resp.status(), 200, "get by id");
    let resp = get(format!("/api/v1/audit/export?correlation_id={corr}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "export");
    let export: Value = resp.json().await.unwrap();
    assert_eq!(export["export_metadata"]["exported_by"], READER_USER);
    assert_eq!(export["export_metadata"]["total_events"], 3);
    let resp = get("/api/v1/audit/checkpoints".to_owned()).await.unwrap();
    assert_eq!(resp.status(), 200, "checkpoints");
    let resp = app
        .client
        .post(app.url("/api/v1/audit/verify-chain"))
        .bearer_auth(READER_TOKEN)
        .json(&json!({ "correlation_id": corr }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "verify-chain");

    let resp = app
        .client
        .post(app.url("/api/v1/audit/events"))
        .bearer_auth(READER_TOKEN)
        .json(&event(corr, 9))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 403, "forbidden").await;
    assert!(
        body["detail"].as_str().unwrap().contains(READER_USER),
        "{body}"
    );
}

#[tokio::test]
async fn a_token_the_review_api_rejects_is_401() {
    let (api, reviews, _server) = start_review_server().await;
    let app = spawn_kubernetes_app(api).await;
    let resp = app
        .client
        .post(app.url("/api/v1/audit/events/batch"))
        .bearer_auth("expired-token-0123456789")
        .json(&events("corr-expired", 1))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, "unauthorized").await;
    assert!(
        reviews.access.lock().unwrap().is_empty(),
        "no access review for an unknown user"
    );
}

#[tokio::test]
async fn the_review_api_being_down_is_503_never_allow() {
    let (api, _reviews, server) = start_review_server().await;
    server.abort();
    let _ = server.await;
    let app = spawn_kubernetes_app(api).await;
    let resp = app
        .client
        .post(app.url("/api/v1/audit/events/batch"))
        .bearer_auth(SA_TOKEN)
        .json(&events("corr-down", 1))
        .send()
        .await
        .unwrap();
    let retry_after = resp.headers().get("retry-after").cloned();
    assert_problem(resp, 503, "service-unavailable").await;
    assert!(retry_after.is_some());
    let stored: i64 = rusqlite::Connection::open(&app.db_path)
        .unwrap()
        .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 0);
}
