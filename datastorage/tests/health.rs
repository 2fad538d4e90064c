//! Health and readiness, including the drain phase of graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn readyz_is_served_on_both_ports_and_healthz_on_the_health_port() {
    let app = spawn_app().await;
    for url in [
        format!("http://{}/readyz", app.health),
        format!("http://{}/readyz", app.api),
        format!("http://{}/healthz", app.health),
    ] {
        let resp = app.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
    }
}

#[tokio::test]
async fn readyz_turns_503_during_the_shutdown_delay_while_requests_still_succeed() {
    let app = spawn_app_with(|c| c.server.shutdown_delay = Duration::from_secs(30)).await;
    app.stop.cancel();
    // The phase flips synchronously after the stop signal is observed; poll the
    // readiness endpoint (the signal under test) until it reports draining.
    let readyz = format!("http://{}/readyz", app.health);
    let mut status = 200;
    for _ in 0..200 {
        status = app
            .client
            .get(&readyz)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 503 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, 503);
    let body: Value = app
        .client
        .get(&readyz)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "shutting_down");
    // Still accepting during the propagation delay: nothing in flight is lost.
    assert_eq!(app.post_batch(&events("corr-drain", 3)).await.status(), 201);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let (status, doc) = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/audit/events",
        "/api/v1/audit/events/batch",
        "/api/v1/audit/events/{event_id}",
        "/api/v1/audit/verify-chain",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["AuditEvent"].is_object());
}

#[tokio::test]
async fn the_openapi_document_declares_what_the_server_enforces() {
    let app = spawn_app().await;
    let (_, doc) = app.get_json("/api/v1/openapi.json").await;
    let params = doc["paths"]["/api/v1/audit/events"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 1000, "{limit}");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            if op.get("requestBody").is_some() {
                for status in ["413", "415"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
            }
            for status in ["503", "504"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
}
