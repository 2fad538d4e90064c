//! Deleting events is tamper too: verify-chain compares the rows with the chain
//! head kept apart from them, on both backends, against the real database files.

mod common;

use std::time::Duration;

use common::*;
use datastorage::testing::pg::PgCluster;
use serde_json::Value;

/// How the test deletes rows the way an operator with database access could.
enum Db<'a> {
    Sqlite(&'a std::path::Path),
    Postgres(&'a PgCluster),
}

impl Db<'_> {
    async fn delete(&self, sql: &str) -> u64 {
        match self {
            Db::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute(sql, []).unwrap() as u64
            }
            Db::Postgres(cluster) => cluster
                .superuser()
                .await
                .unwrap()
                .execute(sql, &[])
                .await
                .unwrap(),
        }
    }
}

fn reasons(report: &Value) -> Vec<String> {
    report["tampered_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reason"].as_str().unwrap().to_owned())
        .collect()
}

async fn truncation_and_deletion_are_detected(app: &TestApp, db: Db<'_>) {
    assert_eq!(
        app.post_batch(&events("corr-trunc", 20)).await.status(),
        201
    );
    assert_eq!(app.post_batch(&events("corr-gone", 3)).await.status(), 201);

    let deleted = db
        .delete("DELETE FROM audit_events WHERE correlation_id = 'corr-trunc' AND chain_seq > 10")
        .await;
    assert_eq!(deleted, 10);
    let (status, report) = verify(app, "corr-trunc").await;
    assert_eq!(status, 200);
    assert_eq!(report["is_valid"], false, "{report}");
    assert_eq!(reasons(&report), ["tail_truncated"], "{report}");
    assert_eq!(report["tampered_events"][0]["chain_seq"], 11, "{report}");

    // New events continue after the head: deleted sequence numbers are never reused.
    assert_eq!(app.post_batch(&events("corr-trunc", 2)).await.status(), 201);
    let mut seqs: Vec<i64> = app
        .all_events("corr-trunc")
        .await
        .iter()
        .map(|e| e["chain_seq"].as_i64().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs[10..], [21, 22]);

    // A whole correlation deleted is reported, not answered "never seen".
    assert_eq!(
        db.delete("DELETE FROM audit_events WHERE correlation_id = 'corr-gone'")
            .await,
        3
    );
    let (status, report) = verify(app, "corr-gone").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["is_valid"], false, "{report}");
    assert_eq!(report["total_events"], 0);
    assert_eq!(reasons(&report), ["tail_truncated"], "{report}");
}

#[tokio::test]
async fn sqlite_tail_truncation_and_deleted_correlations_fail_verification() {
    let app = spawn_app().await;
    truncation_and_deletion_are_detected(&app, Db::Sqlite(&app.db_path.clone())).await;
}

#[tokio::test]
async fn postgres_tail_truncation_and_deleted_correlations_fail_verification() {
    let Some(cluster) = tokio::task::spawn_blocking(PgCluster::start_or_skip)
        .await
        .unwrap()
    else {
        return;
    };
    let pg = cluster.default_config();
    let app = spawn_app_with(|c| {
        c.store.backend = datastorage::config::Backend::Postgres;
        c.store.postgres = pg;
        c.store.postgres.connect_timeout = Duration::from_secs(2);
    })
    .await;
    truncation_and_deletion_are_detected(&app, Db::Postgres(&cluster)).await;
}
