//! Tokens never reach the logs, at any level, in either auth mode.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth::AuthMode;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};

const STATIC_TOKEN: &str = "static-secret-token-7f3a9c2e41";
const K8S_TOKEN: &str = "k8s-secret-token-5b8d0e6f13";
const UNKNOWN_TOKEN: &str = "unknown-secret-token-2c4e6a8b";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn review_server() -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(|Json(body): Json<Value>| async move {
                let ok = body["spec"]["token"] == K8S_TOKEN;
                Json(json!({
                    "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {},
                    "spec": {}, "status": {"authenticated": ok, "audiences": body["spec"]["audiences"],
                        "user": {"username": "alice"}}
                }))
            }),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(|| async {
                Json(json!({
                    "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                    "metadata": {}, "spec": {}, "status": {"allowed": true}
                }))
            }),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(|| async {
                Json(json!({
                    "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "metadata": {}, "spec": {}, "status": {"allowed": true}
                }))
            }),
        )
        // Every other path fails, so error paths are logged too.
        .fallback(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn traffic(app: &TestApp, token: &str) {
    for t in [token, UNKNOWN_TOKEN] {
        app.client
            .post(app.url("/api/v1/audit/events/batch"))
            .bearer_auth(t)
            .json(&events("corr-logs", 2))
            .send()
            .await
            .unwrap();
        app.client
            .get(app.url("/api/v1/audit/events?correlation_id=corr-logs"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn no_token_appears_in_logs_during_authenticated_traffic() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!("{STATIC_TOKEN}: {{subject: alice, verbs: [create]}}\n"),
    )
    .unwrap();
    let static_app = spawn_app_with(|c| {
        c.auth.mode = AuthMode::Static;
        c.auth.tokens_file = Some(tokens.clone());
    })
    .await;
    traffic(&static_app, STATIC_TOKEN).await;

    // The SDK reads its token from a file and retries a 401 after re-reading it.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, STATIC_TOKEN).unwrap();
    let mut config = audit_sdk::AuditConfig::new(format!("http://{}", static_app.api));
    config.token_file = Some(token_file);
    config.flush_interval = Duration::from_millis(10);
    let store = audit_sdk::AuditStore::new(config).unwrap();
    store
        .record(serde_json::from_value(event("corr-logs-sdk", 0)).unwrap())
        .unwrap();
    store.flush_timeout(Duration::from_secs(10)).await.unwrap();
    store.close().await;

    let api = review_server().await;
    let k8s_app = spawn_app_with(|c| {
        c.auth.mode = AuthMode::Kubernetes;
        c.auth.namespace = Some("kubernaut-system".into());
        c.auth.api_server_url = Some(format!("http://{api}"));
    })
    .await;
    traffic(&k8s_app, K8S_TOKEN).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("request refused by auth"),
        "capture works:\n{text}"
    );
    assert!(text.lines().count() > 20, "TRACE logs were captured");
    for token in [STATIC_TOKEN, K8S_TOKEN, UNKNOWN_TOKEN] {
        assert!(!text.contains(token), "token {token} leaked into logs");
    }
}
