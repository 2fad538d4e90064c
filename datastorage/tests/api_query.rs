//! Queries over HTTP: filters, relative time bounds, keyset pagination, get-by-id.

mod common;

use std::collections::HashSet;

use chrono::{Duration, Utc};
use common::*;
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pages_walk_every_event_once_newest_first() {
    let app = spawn_app().await;
    let mut batch = events("corr-pages", 25);
    // Distinct, known timestamps: event n is n seconds old.
    let now = Utc::now();
    for (n, e) in batch.iter_mut().enumerate() {
        e["event_timestamp"] = json!(audit_sdk::timestamp::format(
            &(now - Duration::seconds(n as i64))
        ));
    }
    assert_eq!(app.post_batch(&batch).await.status(), 201);

    let mut seen = Vec::new();
    let mut path = "/api/v1/audit/events?correlation_id=corr-pages&limit=10".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        assert_eq!(page["pagination"]["limit"], 10);
        seen.extend(ids(&page));
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(page["pagination"]["has_more"], true);
                path =
                    format!("/api/v1/audit/events?correlation_id=corr-pages&limit=10&cursor={c}");
            }
            None => {
                assert_eq!(page["pagination"]["has_more"], false);
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = batch
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, expected, "newest first, each exactly once");
}

#[tokio::test]
async fn filters_narrow_the_result() {
    let app = spawn_app().await;
    let mut batch = events("corr-filter", 6);
    batch[1]["event_outcome"] = json!("failure");
    batch[2]["event_type"] = json!("gateway.crd.created");
    batch[3]["severity"] = json!("warning");
    batch[4]["event_category"] = json!("remediation");
    batch[5]["event_timestamp"] = json!(audit_sdk::timestamp::format(
        &(Utc::now() - Duration::hours(30))
    ));
    app.post_batch(&batch).await;
    let other = events("corr-other", 2);
    app.post_batch(&other).await;

    let base = "/api/v1/audit/events?correlation_id=corr-filter";
    let cases: [(&str, Vec<usize>); 6] = [
        ("&event_outcome=failure", vec![1]),
        ("&event_type=gateway.crd.created", vec![2]),
        ("&severity=warning", vec![3]),
        ("&event_category=remediation", vec![4]),
        ("&until=24h", vec![5]),
        ("&since=24h&event_outcome=success&severity=critical&event_category=gateway&event_type=gateway.signal.received", vec![0]),
    ];
    for (filter, expected) in cases {
        let (status, page) = app.get_json(&format!("{base}{filter}")).await;
        assert_eq!(status, 200, "{filter}: {page}");
        let want: HashSet<String> = expected
            .iter()
            .map(|i| batch[*i]["event_id"].as_str().unwrap().to_owned())
            .collect();
        let got: HashSet<String> = ids(&page).into_iter().collect();
        assert_eq!(got, want, "filter {filter}");
    }
    let (_, everything) = app.get_json("/api/v1/audit/events").await;
    assert_eq!(everything["data"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn an_rfc3339_since_bound_is_inclusive() {
    let app = spawn_app().await;
    let e = event("corr-since", 0);
    app.post_batch(std::slice::from_ref(&e)).await;
    let ts = e["event_timestamp"].as_str().unwrap().replace('+', "%2B");
    let (_, page) = app
        .get_json(&format!(
            "/api/v1/audit/events?correlation_id=corr-since&since={ts}&until={ts}"
        ))
        .await;
    assert_eq!(ids(&page), [e["event_id"].as_str().unwrap()]);
}

#[tokio::test]
async fn get_by_id_returns_the_stored_row_or_a_404_problem() {
    let app = spawn_app().await;
    let e = event("corr-get", 0);
    app.post_batch(std::slice::from_ref(&e)).await;
    let (status, stored) = app
        .get_json(&format!(
            "/api/v1/audit/events/{}",
            e["event_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored["event_data"], e["event_data"]);
    assert_eq!(stored["hash_algorithm"], "sha256");
    assert_eq!(stored["event_hash"].as_str().unwrap().len(), 64);

    let missing = uuid::Uuid::now_v7();
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/audit/events/{missing}")))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 404, "not-found").await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains(&missing.to_string()));

    let resp = app
        .client
        .get(app.url("/api/v1/audit/events/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "invalid-query").await;
}

#[tokio::test]
async fn bad_query_parameters_are_400_problems_naming_each() {
    let app = spawn_app().await;
    for (query, field) in [
        ("limit=5000", "limit"),
        ("limit=0", "limit"),
        ("since=yesterday", "since"),
        ("event_outcome=meh", "event_outcome"),
        ("cursor=garbage", "cursor"),
        ("offset=100001", "offset"),
        ("offset=-1", "offset"),
        ("detail_key=signal_name", "detail_value"),
    ] {
        let resp = app
            .client
            .get(app.url(&format!("/api/v1/audit/events?{query}")))
            .send()
            .await
            .unwrap();
        let body = assert_problem(resp, 400, "invalid-query").await;
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
}

#[tokio::test]
async fn unknown_query_parameters_are_ignored_as_the_reference_does() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_batch(&events("corr-unknown-param", 2))
            .await
            .status(),
        201
    );
    let (status, page) = app
        .get_json("/api/v1/audit/events?correlation_id=corr-unknown-param&colour=red&limit=")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["pagination"]["total"], 2, "{page}");
    assert_eq!(
        page["pagination"]["limit"], 100,
        "an empty limit is the default: {page}"
    );
}
