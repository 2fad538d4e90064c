//! gRPC ingest on the API port: same semantics and problems as the REST batch.

mod common;

use audit_sdk::proto::{self, v1};
use common::*;

async fn client(
    app: &TestApp,
) -> v1::audit_ingest_client::AuditIngestClient<tonic::transport::Channel> {
    v1::audit_ingest_client::AuditIngestClient::connect(format!("http://{}", app.api))
        .await
        .unwrap()
}

fn proto_event(corr: &str, n: usize) -> v1::AuditEvent {
    let json = event(corr, n);
    let e: audit_sdk::AuditEvent = serde_json::from_value(json).unwrap();
    v1::AuditEvent::from(&e)
}

#[tokio::test]
async fn a_grpc_batch_is_stored_once_and_is_queryable_over_rest() {
    let app = spawn_app().await;
    let mut grpc = client(&app).await;
    let batch: Vec<_> = (0..20).map(|n| proto_event("corr-grpc", n)).collect();
    let first = grpc
        .store_batch(v1::StoreBatchRequest {
            events: batch.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (first.created, first.duplicates, first.event_ids.len()),
        (20, 0, 20)
    );
    let again = grpc
        .store_batch(v1::StoreBatchRequest { events: batch })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.created, again.duplicates), (0, 20));
    assert_eq!(app.all_events("corr-grpc").await.len(), 20);
    let (_, report) = verify(&app, "corr-grpc").await;
    assert_eq!(report["is_valid"], true);
}

#[tokio::test]
async fn an_invalid_grpc_batch_is_invalid_argument_with_the_problem_document() {
    let app = spawn_app().await;
    let mut grpc = client(&app).await;
    let mut batch: Vec<_> = (0..5).map(|n| proto_event("corr-grpc-bad", n)).collect();
    batch[3].event_outcome = "maybe".into();
    batch[4].correlation_id = String::new();
    let status = grpc
        .store_batch(v1::StoreBatchRequest { events: batch })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let problem = proto::problem_from_status(&status).expect("problem in details");
    let mut located: Vec<(Option<usize>, String)> = problem
        .errors
        .iter()
        .map(|e| (e.index, e.field.clone()))
        .collect();
    located.sort();
    assert_eq!(
        located,
        [
            (Some(3), "event_outcome".to_owned()),
            (Some(4), "correlation_id".to_owned())
        ]
    );
    assert!(app.all_events("corr-grpc-bad").await.is_empty());
}

/// A valid event whose `event_data` is ~200 KiB of tiny objects: within the
/// 256 KiB limit, but tens of MB once parsed.
fn costly_event(corr: &str) -> serde_json::Value {
    let mut e = event(corr, 0);
    let tiny = vec![serde_json::json!({"a": 0}); 200 * 1024 / 8];
    e["event_data"] = serde_json::json!({ "x": tiny });
    e
}

#[tokio::test]
async fn a_grpc_batch_over_the_ingest_memory_budget_is_refused_as_over_http() {
    // 8 MiB of budget: one request may reserve 4 MiB.
    let app = spawn_app_with(|c| c.limits.ingest_memory_bytes = 8 << 20).await;
    let costly = costly_event("corr-grpc-costly");

    // HTTP refuses it before parsing it...
    let resp = app.post_batch(std::slice::from_ref(&costly)).await;
    assert_problem(resp, 413, "payload-too-large").await;

    // ...and so does gRPC, with the same problem document.
    let mut grpc = client(&app).await;
    let e: audit_sdk::AuditEvent = serde_json::from_value(costly).unwrap();
    let status = grpc
        .store_batch(v1::StoreBatchRequest {
            events: vec![v1::AuditEvent::from(&e)],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let problem = proto::problem_from_status(&status).expect("problem in details");
    assert_eq!(problem.status, 413, "{problem:?}");
    assert!(
        problem.problem_type.ends_with("payload-too-large"),
        "{problem:?}"
    );
    assert!(app.all_events("corr-grpc-costly").await.is_empty());

    // A batch within the budget is stored over both transports.
    let small: Vec<_> = (0..3).map(|n| proto_event("corr-grpc-costly", n)).collect();
    let stored = grpc
        .store_batch(v1::StoreBatchRequest { events: small })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.created, 3);
}

#[tokio::test]
async fn a_grpc_batch_over_max_batch_size_is_refused_by_count() {
    let app = spawn_app_with(|c| c.limits.max_batch_size = 5).await;
    let mut grpc = client(&app).await;
    let batch: Vec<_> = (0..6).map(|n| proto_event("corr-grpc-many", n)).collect();
    let status = grpc
        .store_batch(v1::StoreBatchRequest { events: batch })
        .await
        .unwrap_err();
    let problem = proto::problem_from_status(&status).expect("problem in details");
    let http = app.post_batch(&events("corr-grpc-many", 6)).await;
    assert_problem(http, problem.status, "batch-too-large").await;
    assert!(
        problem.problem_type.ends_with("batch-too-large"),
        "{problem:?}"
    );
    assert!(app.all_events("corr-grpc-many").await.is_empty());
}
