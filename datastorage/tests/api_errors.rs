//! Every HTTP failure is an RFC 7807 problem with a stable type.

mod common;

use common::*;

#[tokio::test]
async fn a_body_over_max_body_bytes_is_413() {
    let app = spawn_app().await;
    // 6 MiB of syntactically valid JSON, over the 5 MiB default.
    let big = format!("[{{\"pad\":\"{}\"}}]", "x".repeat(6 * 1024 * 1024));
    let resp = app
        .client
        .post(app.url("/api/v1/audit/events/batch"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 413, "payload-too-large").await;
}

#[tokio::test]
async fn a_non_json_content_type_is_415() {
    let app = spawn_app().await;
    for content_type in [Some("text/plain"), None] {
        let mut req = app
            .client
            .post(app.url("/api/v1/audit/events/batch"))
            .body("[]");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        assert_problem(resp, 415, "unsupported-media-type").await;
    }
}

#[tokio::test]
async fn malformed_json_is_400_with_the_parser_position() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/api/v1/audit/events/batch"))
        .header("content-type", "application/json")
        .body("[{\"event_type\": ")
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 400, "malformed-json").await;
    assert!(
        body["detail"].as_str().unwrap().contains("line 1"),
        "{body}"
    );

    // A JSON object where an array is expected is malformed for the batch route.
    let resp = app
        .client
        .post(app.url("/api/v1/audit/events/batch"))
        .json(&serde_json::json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "malformed-json").await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not-found").await;

    let resp = app
        .client
        .delete(app.url("/api/v1/audit/events/batch"))
        .send()
        .await
        .unwrap();
    let allow = resp.headers().get("allow").cloned();
    assert_problem(resp, 405, "method-not-allowed").await;
    assert_eq!(allow.unwrap(), "POST");
}

#[tokio::test]
async fn an_empty_batch_is_a_validation_problem() {
    let app = spawn_app().await;
    let resp = app.post_batch(&[]).await;
    assert_problem(resp, 400, "validation-error").await;
}

#[tokio::test]
async fn made_up_http_methods_share_one_metric_label() {
    let app = spawn_app().await;
    for method in ["BREW", "WHEN", "XYZZY"] {
        let resp = app
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                app.url("/api/v1/audit/events"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405);
    }
    let text = app
        .client
        .get(format!("http://{}/metrics", app.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for method in ["BREW", "WHEN", "XYZZY"] {
        assert!(!text.contains(&format!("method=\"{method}\"")), "{text}");
    }
    assert!(text.contains("method=\"other\""), "{text}");
}

/// A path segment that must be a UUID is a 400 naming the parameter, on every route that has one.
#[tokio::test]
async fn a_path_id_that_is_not_a_uuid_is_a_400_naming_the_parameter() {
    let app = spawn_app().await;
    for (path, name) in [
        ("/api/v1/audit/events/not-a-uuid", "event_id"),
        ("/api/v1/audit/checkpoints/not-a-uuid", "checkpoint_id"),
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        let body = assert_problem(resp, 400, "invalid-query").await;
        assert_eq!(
            body["detail"],
            format!("{name} must be a UUID, got \"not-a-uuid\""),
            "{body}"
        );
    }
}
