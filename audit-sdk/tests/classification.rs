//! One test per row of the delivery classification table (README): what each
//! answer of DataStorage, or of something in front of it, does to the events.
//! A scripted HTTP server on loopback answers; the SDK's real HTTP transport
//! classifies.

mod common;

use std::time::Duration;

use audit_sdk::problem::{FieldError, Problem, ProblemType};
use audit_sdk::{AuditConfig, AuditStore, FlushError};
use common::logs::capture;
use common::stub::{Scripted, Stub};
use common::*;

fn config(stub: &Stub) -> AuditConfig {
    let mut c = sdk_config(&stub.url());
    c.batch_size = 5;
    c.flush_interval = Duration::from_millis(10);
    c.retry_min_delay = Duration::from_millis(10);
    c.retry_max_delay = Duration::from_millis(50);
    c
}

fn record(store: &AuditStore, n: usize) -> Vec<uuid::Uuid> {
    (0..n)
        .map(|i| store.record(event("corr-class", i)).unwrap())
        .collect()
}

/// Refused by something that is not DataStorage's validation: kept, retried,
/// ONE actionable ERROR naming the URL and the status, nothing set aside, and
/// delivered once the fault is gone.
async fn retried_with_one_error(refusal: Scripted) {
    let logs = capture();
    let status = refusal.status;
    let stub = Stub::start(vec![refusal.clone(), refusal.clone(), refusal]).await;
    let spool = tempfile::tempdir().unwrap();
    let mut c = config(&stub);
    c.spool_dir = Some(spool.path().to_owned());
    let store = AuditStore::new(c).unwrap();
    let ids = record(&store, 5);
    store.flush_timeout(Duration::from_secs(10)).await.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 4, "three refusals, then the acknowledged send");
    assert_eq!(seen[3].ids, ids, "the whole batch, not a bisected half");
    let report = store.close().await;
    assert_eq!((report.delivered, report.rejected), (5, 0), "{report:?}");
    assert!(!spool.path().join(audit_sdk::spool::REJECTED_FILE).exists());
    let errors = logs.lines("ERROR", &stub.addr.to_string());
    assert_eq!(errors.len(), 1, "exactly one ERROR: {errors:#?}");
    assert!(
        errors[0].contains(&format!("status={status}")),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("data_storage_url"), "{}", errors[0]);
}

#[tokio::test]
async fn a_404_wrong_path_is_retried_not_set_aside() {
    retried_with_one_error(Scripted::status(404)).await;
}

#[tokio::test]
async fn a_405_redirect_turned_get_is_retried_not_set_aside() {
    retried_with_one_error(Scripted::status(405)).await;
}

#[tokio::test]
async fn a_415_is_retried_not_set_aside() {
    retried_with_one_error(Scripted::status(415)).await;
}

#[tokio::test]
async fn a_421_misdirected_is_retried_not_set_aside() {
    retried_with_one_error(Scripted::status(421)).await;
}

#[tokio::test]
async fn a_proxy_400_http_against_a_tls_port_is_retried_not_set_aside() {
    retried_with_one_error(
        Scripted::status(400)
            .header("content-type", "text/html")
            .body("<html><center>The plain HTTP request was sent to HTTPS port</center></html>"),
    )
    .await;
}

#[tokio::test]
async fn a_400_problem_that_is_not_validation_is_retried_not_set_aside() {
    let problem = Problem::new(ProblemType::MalformedJson, "expected an array");
    retried_with_one_error(
        Scripted::status(400)
            .header("content-type", "application/problem+json")
            .body(serde_json::to_string(&problem).unwrap()),
    )
    .await;
}

#[tokio::test]
async fn a_validation_problem_sets_aside_exactly_the_named_indexes_and_resends_the_rest() {
    let problem =
        Problem::new(ProblemType::ValidationError, "2 events are invalid").with_errors(vec![
            FieldError::new("retention_days", "must be 1..2555").at(1),
            FieldError::new("event_type", "too long").at(3),
        ]);
    let stub = Stub::start(vec![Scripted::status(400)
        .header("content-type", "application/problem+json")
        .body(serde_json::to_string(&problem).unwrap())])
    .await;
    let spool = tempfile::tempdir().unwrap();
    let mut c = config(&stub);
    c.spool_dir = Some(spool.path().to_owned());
    let store = AuditStore::new(c).unwrap();
    let ids = record(&store, 5);
    let err = store
        .flush_timeout(Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err, FlushError::Rejected { count: 2 });
    let seen = stub.seen();
    assert_eq!(seen.len(), 2, "no bisection: one refusal, one resend");
    assert_eq!(seen[1].ids, vec![ids[0], ids[2], ids[4]]);
    // Reported once: a later flush with nothing new set aside is Ok.
    store.flush_timeout(Duration::from_secs(5)).await.unwrap();
    let report = store.close().await;
    assert_eq!((report.delivered, report.rejected), (3, 2), "{report:?}");
    let rejected =
        std::fs::read_to_string(spool.path().join(audit_sdk::spool::REJECTED_FILE)).unwrap();
    let set_aside: Vec<String> = rejected
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(set_aside, vec![ids[1].to_string(), ids[3].to_string()]);
    assert!(rejected.contains("retention_days") && rejected.contains("event_type"));
}

async fn first_retry_gap(refusal: Scripted, retry_max_delay: Duration) -> Duration {
    let stub = Stub::start(vec![refusal]).await;
    let mut c = config(&stub);
    c.retry_max_delay = retry_max_delay;
    let store = AuditStore::new(c).unwrap();
    record(&store, 5);
    store.flush_timeout(Duration::from_secs(20)).await.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    store.close().await;
    seen[1].at - seen[0].at
}

#[tokio::test]
async fn a_503_retry_after_in_seconds_is_honoured() {
    let gap = first_retry_gap(
        Scripted::status(503).header("retry-after", "1"),
        Duration::from_secs(30),
    )
    .await;
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
    assert!(gap < Duration::from_secs(3), "{gap:?}");
}

#[tokio::test]
async fn a_429_retry_after_as_an_http_date_is_honoured() {
    let at = std::time::SystemTime::now() + Duration::from_secs(3);
    let gap = first_retry_gap(
        Scripted::status(429).header("retry-after", httpdate::fmt_http_date(at)),
        Duration::from_secs(30),
    )
    .await;
    // The date has one-second resolution: at least 2 s of the 3 remain.
    assert!(gap >= Duration::from_secs(2), "{gap:?}");
    assert!(gap < Duration::from_secs(5), "{gap:?}");
}

#[tokio::test]
async fn a_retry_after_of_an_hour_is_capped_at_retry_max_delay() {
    let gap = first_retry_gap(
        Scripted::status(503).header("retry-after", "3600"),
        Duration::from_millis(300),
    )
    .await;
    assert!(gap < Duration::from_secs(2), "{gap:?}");
}

#[tokio::test]
async fn a_401_re_reads_the_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "old-token").unwrap();
    let stub = Stub::start(vec![]).await;
    let rotated = token.clone();
    stub.on_request(move |seen| {
        (seen.token.as_deref() == Some("old-token")).then(|| {
            // The kubelet rotates the projected token while the old one is refused.
            std::fs::write(&rotated, "new-token").unwrap();
            Scripted::status(401)
        })
    });
    let mut c = config(&stub);
    c.token_file = Some(token);
    c.token_refresh_interval = Duration::from_secs(3600); // only a 401 re-reads it
    let store = AuditStore::new(c).unwrap();
    record(&store, 5);
    store.flush_timeout(Duration::from_secs(10)).await.unwrap();
    let tokens: Vec<_> = stub.seen().into_iter().map(|s| s.token).collect();
    assert_eq!(
        tokens,
        vec![Some("old-token".to_owned()), Some("new-token".to_owned())]
    );
    store.close().await;
}

#[tokio::test]
async fn a_403_is_retried_until_the_binding_is_fixed() {
    let logs = capture();
    let stub = Stub::start(vec![Scripted::status(403), Scripted::status(403)]).await;
    let store = AuditStore::new(config(&stub)).unwrap();
    let ids = record(&store, 5);
    store.flush_timeout(Duration::from_secs(10)).await.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].ids, ids);
    let report = store.close().await;
    assert_eq!((report.delivered, report.rejected), (5, 0));
    let port = stub.addr.port().to_string();
    assert_eq!(logs.lines("ERROR", &port).len(), 1);
}
