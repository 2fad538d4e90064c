//! The legal-hold endpoints over HTTP (embedded store; the PostgreSQL path is
//! covered by `postgres_outage.rs` and the conformance suite).

mod common;

use common::*;
use serde_json::{json, Value};

async fn place(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/audit/legal-hold"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn release(app: &TestApp, corr: &str, body: Value) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/api/v1/audit/legal-hold/{corr}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_hold_is_placed_listed_marks_events_and_is_released() {
    let app = spawn_app().await;
    assert_eq!(app.post_batch(&events("corr-lh", 4)).await.status(), 201);

    let resp = place(
        &app,
        json!({"correlation_id": "corr-lh", "reason": "case 9"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let hold: Value = resp.json().await.unwrap();
    assert_eq!(hold["events_held"], 4, "{hold}");
    assert_eq!(hold["placed_by"], "anonymous", "auth is disabled in tests");
    let again = place(
        &app,
        json!({"correlation_id": "corr-lh", "reason": "other"}),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["reason"], "case 9");

    let stored = app.all_events("corr-lh").await;
    assert!(stored.iter().all(|e| e["legal_hold"] == true), "{stored:?}");
    let (status, list) = app.get_json("/api/v1/audit/legal-hold").await;
    assert_eq!(status, 200);
    assert_eq!(list["holds"].as_array().unwrap().len(), 1, "{list}");

    let resp = release(&app, "corr-lh", json!({"release_reason": "closed"})).await;
    assert_eq!(resp.status(), 200);
    let released: Value = resp.json().await.unwrap();
    assert_eq!(released["events_released"], 4, "{released}");
    let stored = app.all_events("corr-lh").await;
    assert!(stored.iter().all(|e| e["legal_hold"] == false));
    let (_, list) = app.get_json("/api/v1/audit/legal-hold").await;
    assert_eq!(list["holds"], json!([]));
}

#[tokio::test]
async fn invalid_bodies_and_unknown_holds_are_problems() {
    let app = spawn_app().await;
    let body = assert_problem(
        place(&app, json!({"correlation_id": " ", "reason": ""})).await,
        400,
        "validation-error",
    )
    .await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    assert_problem(
        place(&app, json!({"correlation_id": "c"})).await,
        400,
        "malformed-json",
    )
    .await;
    assert_problem(
        release(&app, "never-held", json!({"release_reason": "x"})).await,
        404,
        "not-found",
    )
    .await;
    assert_problem(
        release(&app, "never-held", json!({})).await,
        400,
        "malformed-json",
    )
    .await;
}

#[tokio::test]
async fn the_openapi_document_lists_the_legal_hold_routes() {
    let app = spawn_app().await;
    let (status, doc) = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let paths = &doc["paths"];
    assert!(
        paths["/api/v1/audit/legal-hold"]["post"].is_object(),
        "{paths}"
    );
    assert!(paths["/api/v1/audit/legal-hold"]["get"].is_object());
    assert!(paths["/api/v1/audit/legal-hold/{correlation_id}"]["delete"].is_object());
}
