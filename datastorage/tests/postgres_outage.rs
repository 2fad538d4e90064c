//! PostgreSQL-specific behaviour through the HTTP API: tamper evidence with the
//! triggers bypassed by a superuser, and a database outage in the middle of a
//! stream of batches.

mod common;

use std::time::{Duration, Instant};

use common::*;
use datastorage::config::Backend;
use datastorage::testing::pg::PgCluster;
use serde_json::Value;

async fn cluster() -> Option<PgCluster> {
    tokio::task::spawn_blocking(PgCluster::start_or_skip)
        .await
        .unwrap()
}

async fn spawn_pg_app(cluster: &PgCluster) -> TestApp {
    let pg = cluster.default_config();
    spawn_app_with(|c| {
        c.store.backend = Backend::Postgres;
        c.store.postgres = pg;
        c.store.postgres.connect_timeout = Duration::from_secs(1);
        c.store.postgres.wait_timeout = Duration::from_secs(1);
    })
    .await
}

#[tokio::test]
async fn editing_event_data_with_triggers_disabled_is_detected_naming_the_event() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let app = spawn_pg_app(&cluster).await;
    let batch = events("corr-pg-tamper", 10);
    assert_eq!(app.post_batch(&batch).await.status(), 201);
    let (_, clean) = verify(&app, "corr-pg-tamper").await;
    assert_eq!(clean["is_valid"], true, "{clean}");

    let victim = batch[6]["event_id"].as_str().unwrap().to_owned();
    let victim_id = uuid::Uuid::parse_str(&victim).unwrap();
    let db = cluster.superuser().await.unwrap();
    let blocked = db
        .execute(
            "UPDATE audit_events SET event_data = '{}' WHERE event_id = $1",
            &[&victim_id],
        )
        .await;
    assert!(
        blocked.is_err(),
        "the immutability trigger must refuse updates"
    );
    // A superuser switches triggers off for the session and edits the data.
    db.batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let changed = db
        .execute(
            "UPDATE audit_events SET event_data = '{\"n\":6,\"signal_name\":\"Nothing\"}' \
             WHERE event_id = $1",
            &[&victim_id],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);

    let (status, report) = verify(&app, "corr-pg-tamper").await;
    assert_eq!(status, 200);
    assert_eq!(report["is_valid"], false, "{report}");
    let tampered = report["tampered_events"].as_array().unwrap();
    assert_eq!(tampered.len(), 1, "{report}");
    assert_eq!(tampered[0]["event_id"], victim.as_str());
    assert_eq!(tampered[0]["reason"], "content_modified");
}

#[tokio::test]
async fn held_events_cannot_be_deleted_until_the_hold_is_released() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let app = spawn_pg_app(&cluster).await;
    assert_eq!(app.post_batch(&events("corr-held", 3)).await.status(), 201);
    let resp = app
        .client
        .post(app.url("/api/v1/audit/legal-hold"))
        .json(&serde_json::json!({"correlation_id": "corr-held", "reason": "case 7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let hold: Value = resp.json().await.unwrap();
    assert_eq!(hold["events_affected"], 3, "{hold}");

    let db = cluster.superuser().await.unwrap();
    let refused = db
        .execute(
            "DELETE FROM audit_events WHERE correlation_id = 'corr-held'",
            &[],
        )
        .await;
    assert!(refused.is_err(), "held rows must not be deletable");

    let (status, list) = app.get_json("/api/v1/audit/legal-hold").await;
    assert_eq!(status, 200);
    assert_eq!(list["holds"][0]["correlation_id"], "corr-held", "{list}");

    let resp = app
        .client
        .delete(app.url("/api/v1/audit/legal-hold/corr-held"))
        .json(&serde_json::json!({"release_reason": "case closed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let deleted = db
        .execute(
            "DELETE FROM audit_events WHERE correlation_id = 'corr-held'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    let resp = app
        .client
        .delete(app.url("/api/v1/audit/legal-hold/corr-held"))
        .json(&serde_json::json!({"release_reason": "again"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not-found").await;
}

#[tokio::test]
async fn the_legal_hold_journal_cannot_be_updated_or_deleted() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let app = spawn_pg_app(&cluster).await;
    assert_eq!(
        app.post_batch(&events("corr-journal", 2)).await.status(),
        201
    );
    let resp = app
        .client
        .post(app.url("/api/v1/audit/legal-hold"))
        .json(&serde_json::json!({"correlation_id": "corr-journal", "reason": "case 8"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .client
        .delete(app.url("/api/v1/audit/legal-hold/corr-journal"))
        .json(&serde_json::json!({"release_reason": "case closed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Not even a superuser may rewrite or remove an entry.
    let db = cluster.superuser().await.unwrap();
    for sql in [
        "UPDATE legal_hold_history SET reason = 'rewritten' WHERE correlation_id = 'corr-journal'",
        "DELETE FROM legal_hold_history WHERE correlation_id = 'corr-journal'",
        "TRUNCATE legal_hold_history",
    ] {
        let err = db.execute(sql, &[]).await.unwrap_err();
        let db_err = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        assert_eq!(
            db_err.code(),
            &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
            "{sql}: {db_err}"
        );
        assert!(db_err.message().contains("append-only"), "{sql}: {db_err}");
    }
    let rows: Vec<(String, String, i64)> = db
        .query(
            "SELECT action, reason, events FROM legal_hold_history \
             WHERE correlation_id = 'corr-journal' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("placed".to_owned(), "case 8".to_owned(), 2),
            ("released".to_owned(), "case closed".to_owned(), 2),
        ]
    );
    let (status, body) = app
        .get_json("/api/v1/audit/legal-hold/corr-journal/history")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["history"].as_array().unwrap().len(), 2, "{body}");
}

const OUTAGE: Duration = Duration::from_secs(20);
const BATCHES: usize = 60;
const BATCH: usize = 50;

async fn readyz(app: &TestApp) -> u16 {
    match app
        .client
        .get(format!("http://{}/readyz", app.health))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_503_then_every_retried_batch_is_stored_once() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let app = spawn_pg_app(&cluster).await;
    let batches: Vec<Vec<Value>> = (0..BATCHES).map(|_| events("corr-outage", BATCH)).collect();

    // A client that retries each batch until it is acknowledged, as the SDK does.
    let (client, url) = (app.client.clone(), app.url("/api/v1/audit/events/batch"));
    let (progress_tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let sender = tokio::spawn(async move {
        let mut unavailable = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            loop {
                let resp = client.post(&url).json(batch).send().await.unwrap();
                match resp.status().as_u16() {
                    201 => break,
                    503 => {
                        let retry_after = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok());
                        assert!(retry_after.is_some(), "503 without a numeric Retry-After");
                        unavailable.push(i);
                        // Retry sooner than Retry-After to keep the test short.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    other => panic!("unexpected status {other}: {}", resp.text().await.unwrap()),
                }
            }
            let _ = progress_tx.send(i);
            // A steady stream, not a flood.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unavailable
    });

    // Stop PostgreSQL once the stream is flowing.
    while progress.recv().await.unwrap() < 5 {}
    let stopper = &cluster;
    tokio::task::block_in_place(|| stopper.stop()).unwrap();
    let down_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(&app).await != 503 {
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Keep it down for the whole outage.
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    assert_eq!(readyz(&app).await, 503);
    tokio::task::block_in_place(|| stopper.restart()).unwrap();

    // Both recover by themselves: no restart of DataStorage.
    let deadline = Instant::now() + Duration::from_secs(15);
    while readyz(&app).await != 200 {
        assert!(Instant::now() < deadline, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unavailable = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the stream finishes after the outage")
        .unwrap();
    assert!(
        !unavailable.is_empty(),
        "the outage must have produced 503s"
    );

    let db = cluster.superuser().await.unwrap();
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT event_id), max(chain_seq) FROM audit_events \
             WHERE correlation_id = 'corr-outage'",
            &[],
        )
        .await
        .unwrap();
    let total = (BATCHES * BATCH) as i64;
    let got: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        got,
        (total, total, total),
        "count, distinct ids, last chain_seq"
    );
    let (_, report) = verify(&app, "corr-outage").await;
    assert_eq!(report["is_valid"], true, "{report}");
}
