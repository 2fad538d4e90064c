//! Static-token authentication end to end: verbs per token, 401s, actor
//! attribution, and the SDK sending its token.

mod common;

use std::time::Duration;

use auth::AuthMode;
use common::*;
use serde_json::Value;

const WRITER: &str = "writer-token-0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef";
const HUMAN: &str = "alice-token-0123456789abcdef";
const COMPLIANCE: &str = "compliance-token-0123456789ab";

fn tokens_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("tokens.yaml");
    std::fs::write(
        &path,
        format!(
            "{WRITER}: {{subject: \"system:serviceaccount:kubernaut-system:gateway\", verbs: [create]}}\n\
             {READER}: {{subject: \"system:serviceaccount:kubernaut-system:audit-reader\", verbs: [list, get]}}\n\
             {HUMAN}: {{subject: \"alice@example.com\", verbs: [create, list, get]}}\n\
             {COMPLIANCE}: {{subject: \"carol@example.com\", verbs: [update]}}\n"
        ),
    )
    .unwrap();
    path
}

async fn spawn_with_tokens(dir: &tempfile::TempDir) -> TestApp {
    let file = tokens_file(dir);
    spawn_app_with(|c| {
        c.auth.mode = AuthMode::Static;
        c.auth.tokens_file = Some(file);
    })
    .await
}

async fn post(app: &TestApp, token: Option<&str>, corr: &str) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/audit/events/batch"))
        .json(&events(corr, 2));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn query(app: &TestApp, token: Option<&str>, corr: &str) -> reqwest::Response {
    let mut req = app
        .client
        .get(app.url(&format!("/api/v1/audit/events?correlation_id={corr}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn writers_write_readers_read_and_nobody_else_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_tokens(&dir).await;

    assert_eq!(post(&app, Some(WRITER), "corr-auth").await.status(), 201);
    let body = assert_problem(
        query(&app, Some(WRITER), "corr-auth").await,
        403,
        "forbidden",
    )
    .await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("list") && detail.contains("services/data-storage-service"),
        "{detail}"
    );

    let resp = query(&app, Some(READER), "corr-auth").await;
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let body = assert_problem(
        post(&app, Some(READER), "corr-auth").await,
        403,
        "forbidden",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("create"));

    for token in [None, Some("unknown-token-0123456789abcdef")] {
        assert_problem(post(&app, token, "corr-auth").await, 401, "unauthorized").await;
        assert_problem(query(&app, token, "corr-auth").await, 401, "unauthorized").await;
    }
    let resp = app
        .client
        .get(app.url("/api/v1/audit/events"))
        .header("authorization", "Basic d3JpdGVyOnB3")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, "unauthorized").await;
}

#[tokio::test]
async fn health_readiness_and_metrics_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_tokens(&dir).await;
    for url in [
        format!("http://{}/readyz", app.api),
        format!("http://{}/readyz", app.health),
        format!("http://{}/healthz", app.health),
        format!("http://{}/metrics", app.metrics),
    ] {
        assert_eq!(
            app.client.get(&url).send().await.unwrap().status(),
            200,
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_human_caller_is_recorded_as_the_actor_whatever_the_body_or_headers_claim() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_tokens(&dir).await;
    let resp = app
        .client
        .post(app.url("/api/v1/audit/events/batch"))
        .bearer_auth(HUMAN)
        .header("X-Remote-User", "bob@example.com")
        .json(&events("corr-human", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(post(&app, Some(WRITER), "corr-sa").await.status(), 201);

    let stored: Value = query(&app, Some(HUMAN), "corr-human")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["data"][0]["actor_type"], "user");
    assert_eq!(stored["data"][0]["actor_id"], "alice@example.com");
    // A ServiceAccount acts for others (the gateway audits alerts): its stated actor stays.
    let stored: Value = query(&app, Some(READER), "corr-sa")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["data"][0]["actor_type"], "service");
    assert_eq!(stored["data"][0]["actor_id"], "gateway");
}

#[tokio::test]
async fn the_sdk_sends_its_token_file_over_both_transports() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_tokens(&dir).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{WRITER}\n")).unwrap();
    for transport in [
        audit_sdk::TransportKind::Http,
        audit_sdk::TransportKind::Grpc,
    ] {
        let mut config = audit_sdk::AuditConfig::new(format!("http://{}", app.api));
        config.transport = transport;
        config.token_file = Some(token_file.clone());
        config.flush_interval = Duration::from_millis(20);
        let store = audit_sdk::AuditStore::new(config).unwrap();
        let corr = format!("corr-sdk-{transport:?}");
        for n in 0..10 {
            let e: audit_sdk::AuditEvent = serde_json::from_value(event(&corr, n)).unwrap();
            store.record(e).unwrap();
        }
        store.flush_timeout(Duration::from_secs(20)).await.unwrap();
        let page: Value = query(&app, Some(READER), &corr).await.json().await.unwrap();
        assert_eq!(page["data"].as_array().unwrap().len(), 10, "{transport:?}");
        store.close().await;
    }
}

#[tokio::test]
async fn legal_holds_need_the_update_verb_and_record_who_placed_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_tokens(&dir).await;
    assert_eq!(post(&app, Some(WRITER), "corr-hold").await.status(), 201);
    let hold = serde_json::json!({"correlation_id": "corr-hold", "reason": "case 7"});
    let release = serde_json::json!({"release_reason": "case closed"});
    let url = app.url("/api/v1/audit/legal-hold");
    let release_url = app.url("/api/v1/audit/legal-hold/corr-hold");

    // Writing and reading events is not enough to touch holds.
    for token in [WRITER, READER, HUMAN] {
        let attempts = [
            app.client.post(&url).json(&hold),
            app.client.get(&url),
            app.client.delete(&release_url).json(&release),
        ];
        for attempt in attempts {
            let body = assert_problem(
                attempt.bearer_auth(token).send().await.unwrap(),
                403,
                "forbidden",
            )
            .await;
            assert!(
                body["detail"].as_str().unwrap().contains("update"),
                "{body}"
            );
        }
    }
    assert_problem(
        app.client.get(&url).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;

    let resp = app
        .client
        .post(&url)
        .bearer_auth(COMPLIANCE)
        .json(&hold)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the reference declares 200 for a placed hold"
    );
    let placed: Value = resp.json().await.unwrap();
    assert_eq!(placed["placed_by"], "carol@example.com", "{placed}");
    let resp = app
        .client
        .delete(&release_url)
        .bearer_auth(COMPLIANCE)
        .json(&release)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let released: Value = resp.json().await.unwrap();
    assert_eq!(released["released_by"], "carol@example.com", "{released}");
}
