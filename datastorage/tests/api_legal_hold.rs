//! The legal-hold endpoints over HTTP (embedded store; the PostgreSQL path is
//! covered by `postgres_outage.rs` and the conformance suite).

mod common;

use auth::AuthMode;
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
    assert_eq!(resp.status(), 200);
    let hold: Value = resp.json().await.unwrap();
    assert_eq!(hold["events_affected"], 4, "{hold}");
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
    assert!(
        paths["/api/v1/audit/legal-hold/{correlation_id}/history"]["get"].is_object(),
        "{paths}"
    );
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["LegalHoldHistory"].is_object(), "{schemas}");
    assert!(schemas["LegalHoldAction"].is_object(), "{schemas}");
}

async fn history(app: &TestApp, corr: &str) -> Value {
    let (status, body) = app
        .get_json(&format!("/api/v1/audit/legal-hold/{corr}/history"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["correlation_id"], corr, "{body}");
    body
}

#[tokio::test]
async fn the_history_route_answers_the_journal_oldest_first() {
    let app = spawn_app().await;
    assert_eq!(app.post_batch(&events("corr-hist", 3)).await.status(), 201);
    let hold = json!({"correlation_id": "corr-hist", "reason": "case 11"});
    assert_eq!(place(&app, hold.clone()).await.status(), 200);
    assert_eq!(place(&app, hold).await.status(), 200);
    let resp = release(&app, "corr-hist", json!({"release_reason": "settled"})).await;
    assert_eq!(resp.status(), 200);

    let body = history(&app, "corr-hist").await;
    let entries = body["history"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{body}");
    let strip = |e: &Value| {
        assert!(
            e["at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some(),
            "{e}"
        );
        json!([e["action"], e["reason"], e["actor"], e["events"]])
    };
    assert_eq!(
        entries.iter().map(strip).collect::<Vec<_>>(),
        [
            json!(["placed", "case 11", "anonymous", 3]),
            json!(["released", "settled", "anonymous", 3]),
        ]
    );
    assert!(entries[0]["at"].as_str() <= entries[1]["at"].as_str());

    // Never held: an empty journal, not a 404.
    assert_eq!(history(&app, "never-held").await["history"], json!([]));
}

#[tokio::test]
async fn the_history_route_needs_the_update_verb_and_names_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "reader-token-0123456789abcdef: {subject: reader, verbs: [create, list, get]}\n\
         compliance-token-0123456789ab: {subject: carol@example.com, verbs: [update]}\n",
    )
    .unwrap();
    let app = spawn_app_with(|c| {
        c.auth.mode = AuthMode::Static;
        c.auth.tokens_file = Some(tokens);
    })
    .await;
    let url = app.url("/api/v1/audit/legal-hold/corr-auth/history");
    assert_problem(
        app.client.get(&url).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let body = assert_problem(
        app.client
            .get(&url)
            .bearer_auth("reader-token-0123456789abcdef")
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("update"),
        "{body}"
    );

    let resp = app
        .client
        .post(app.url("/api/v1/audit/legal-hold"))
        .bearer_auth("compliance-token-0123456789ab")
        .json(&json!({"correlation_id": "corr-auth", "reason": "case 12"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .client
        .get(&url)
        .bearer_auth("compliance-token-0123456789ab")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["history"][0]["actor"], "carol@example.com", "{body}");
    assert_eq!(body["history"][0]["action"], "placed", "{body}");
}

#[tokio::test]
async fn sqlite_refuses_to_update_or_delete_journal_entries() {
    let app = spawn_app().await;
    let hold = json!({"correlation_id": "corr-journal", "reason": "case 13"});
    assert_eq!(place(&app, hold).await.status(), 200);
    let resp = release(&app, "corr-journal", json!({"release_reason": "done"})).await;
    assert_eq!(resp.status(), 200);

    let db = rusqlite::Connection::open(&app.db_path).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    for sql in [
        "UPDATE legal_hold_history SET reason = 'rewritten' WHERE correlation_id = 'corr-journal'",
        "UPDATE legal_hold_history SET actor = 'someone else'",
        "DELETE FROM legal_hold_history WHERE correlation_id = 'corr-journal'",
        "DELETE FROM legal_hold_history",
    ] {
        let err = db.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let rows: Vec<(String, String, String)> = db
        .prepare("SELECT action, reason, actor FROM legal_hold_history ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [("placed", "case 13"), ("released", "done")]
        .map(|(a, r)| (a.to_owned(), r.to_owned(), "anonymous".to_owned()));
    assert_eq!(rows, expected);
    // Nor does the CHECK constraint let an unknown action in.
    let err = db
        .execute(
            "INSERT INTO legal_hold_history (correlation_id, action, reason, actor, at, events) \
             VALUES ('x', 'erased', 'r', 'a', 0, 0)",
            [],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("CHECK"), "{err}");
}
