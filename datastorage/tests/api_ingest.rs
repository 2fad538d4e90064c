//! Ingest over HTTP against a real server: idempotency, all-or-nothing batches.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn the_same_batch_posted_twice_is_stored_once() {
    let app = spawn_app().await;
    let batch = events("corr-twice", 50);

    let first = app.post_batch(&batch).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["created"], 50);
    assert_eq!(first["duplicates"], 0);

    let second = app.post_batch(&batch).await;
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["created"], 0);
    assert_eq!(second["duplicates"], 50);
    assert_eq!(first["event_ids"], second["event_ids"]);

    let stored = app.all_events("corr-twice").await;
    assert_eq!(stored.len(), 50);
    let (_, chain) = verify(&app, "corr-twice").await;
    assert_eq!(chain["is_valid"], true, "{chain}");
    assert_eq!(chain["total_events"], 50);
}

#[tokio::test]
async fn a_batch_with_one_invalid_event_writes_nothing() {
    let app = spawn_app().await;
    let mut batch = events("corr-poison", 100);
    batch[42]["event_outcome"] = json!("exploded");

    let resp = app.post_batch(&batch).await;
    let body = assert_problem(resp, 400, "validation-error").await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["index"], 42);
    assert_eq!(errors[0]["field"], "event_outcome");
    assert!(app.all_events("corr-poison").await.is_empty());
}

#[tokio::test]
async fn every_problem_of_every_event_is_reported_together() {
    let app = spawn_app().await;
    let mut batch = events("corr-many", 3);
    batch[0]["event_action"] = json!("");
    batch[2]["retention_days"] = json!(0);
    batch[2]["event_data"] = json!({"event_type": "something.else"});
    let body = assert_problem(app.post_batch(&batch).await, 400, "validation-error").await;
    let mut found: Vec<(u64, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (0, "event_action".to_owned()),
            (2, "event_data.event_type".to_owned()),
            (2, "retention_days".to_owned()),
        ]
    );
}

#[tokio::test]
async fn events_without_ids_get_server_assigned_uuid_v7() {
    let app = spawn_app().await;
    let mut e = event("corr-noid", 0);
    e.as_object_mut().unwrap().remove("event_id");
    let resp = app
        .client
        .post(app.url("/api/v1/audit/events"))
        .json(&e)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let id = uuid::Uuid::parse_str(body["event_ids"][0].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    let (status, stored) = app.get_json(&format!("/api/v1/audit/events/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(stored["correlation_id"], "corr-noid");
    assert_eq!(stored["chain_seq"], 1);
}

#[tokio::test]
async fn a_single_event_posted_again_answers_201_counted_as_a_duplicate() {
    // 201 either way: the only success status the reference platform's client
    // declares for this call; the body says the replay stored nothing.
    let app = spawn_app().await;
    let e = event("corr-single", 0);
    let url = app.url("/api/v1/audit/events");
    let first = app.client.post(&url).json(&e).send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        (first["created"].as_u64(), first["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(first["event_id"], e["event_id"]);
    assert_eq!(first["event_timestamp"], e["event_timestamp"]);
    let again = app.client.post(&url).json(&e).send().await.unwrap();
    assert_eq!(again.status(), 201);
    let body: Value = again.json().await.unwrap();
    assert_eq!(
        (body["created"].as_u64(), body["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(
        body["message"].as_str().unwrap().contains("already stored"),
        "{body}"
    );
    assert_eq!(app.all_events("corr-single").await.len(), 1);
}

#[tokio::test]
async fn a_batch_over_max_batch_size_is_refused() {
    let app = spawn_app_with(|c| c.limits.max_batch_size = 10).await;
    let resp = app.post_batch(&events("corr-big", 11)).await;
    assert_problem(resp, 400, "batch-too-large").await;
    assert!(app.all_events("corr-big").await.is_empty());
}

#[tokio::test]
async fn duplicate_ids_inside_one_batch_are_stored_once() {
    let app = spawn_app().await;
    let e = event("corr-inner", 0);
    let body: Value = app.post_batch(&[e.clone(), e]).await.json().await.unwrap();
    assert_eq!(
        (body["created"].as_u64(), body["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(app.all_events("corr-inner").await.len(), 1);
}

#[tokio::test]
async fn metrics_count_stored_duplicate_and_rejected_events() {
    let app = spawn_app().await;
    let batch = events("corr-metrics", 5);
    app.post_batch(&batch).await;
    app.post_batch(&batch).await;
    let text = app
        .client
        .get(format!("http://{}/metrics", app.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The recorder is process-wide, so other tests add to these; only presence
    // and shape are asserted here.
    for name in [
        "datastorage_events_stored_total",
        "datastorage_events_duplicate_total",
        "datastorage_write_duration_seconds_bucket",
        "datastorage_http_requests_total{route=\"/api/v1/audit/events/batch\",method=\"POST\",status=\"201\"}",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
}

#[tokio::test]
async fn an_event_id_reused_with_other_content_is_a_409_naming_the_index() {
    let app = spawn_app().await;
    let original = event("corr-conflict", 1);
    assert_eq!(
        app.post_batch(std::slice::from_ref(&original))
            .await
            .status(),
        201
    );

    let mut reused = original.clone();
    reused["event_data"]["n"] = json!(99);
    let body = assert_problem(
        app.post_batch(&[event("corr-conflict", 2), reused.clone()])
            .await,
        409,
        "event-id-conflict",
    )
    .await;
    assert_eq!(body["errors"][0]["index"], 1, "{body}");
    assert_eq!(body["errors"][0]["field"], "event_id", "{body}");

    let single = app
        .client
        .post(app.url("/api/v1/audit/events"))
        .json(&reused)
        .send()
        .await
        .unwrap();
    let body = assert_problem(single, 409, "event-id-conflict").await;
    assert!(
        body["errors"][0].get("index").is_none_or(Value::is_null),
        "{body}"
    );
    // Nothing of the refused batch was stored; the original is intact.
    let stored = app.all_events("corr-conflict").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["event_data"]["n"], 1);
}
