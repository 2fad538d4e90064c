//! Tamper evidence against the real SQLite file.

mod common;

use common::*;

#[tokio::test]
async fn editing_event_data_in_the_sqlite_file_flags_exactly_that_event() {
    let app = spawn_app().await;
    let batch = events("corr-tamper", 10);
    assert_eq!(app.post_batch(&batch).await.status(), 201);
    let (status, clean) = verify(&app, "corr-tamper").await;
    assert_eq!(status, 200);
    assert_eq!(clean["is_valid"], true, "{clean}");

    let victim = batch[4]["event_id"].as_str().unwrap().to_owned();
    {
        // What an attacker with file access does: the immutability trigger stops
        // a plain UPDATE, so they drop it first.
        let conn = rusqlite::Connection::open(&app.db_path).unwrap();
        let blocked = conn.execute(
            "UPDATE audit_events SET event_data = '{}' WHERE event_id = ?1",
            [&victim],
        );
        assert!(blocked.is_err(), "the trigger must refuse updates");
        conn.execute_batch("DROP TRIGGER audit_events_immutable")
            .unwrap();
        let changed = conn
            .execute(
                "UPDATE audit_events SET event_data = '{\"n\":4,\"signal_name\":\"Nothing to see\"}' WHERE event_id = ?1",
                [&victim],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }

    let (status, report) = verify(&app, "corr-tamper").await;
    assert_eq!(status, 200);
    assert_eq!(report["is_valid"], false);
    assert_eq!(report["total_events"], 10);
    let tampered = report["tampered_events"].as_array().unwrap();
    assert_eq!(tampered.len(), 1, "{report}");
    assert_eq!(tampered[0]["event_id"], victim.as_str());
    assert_eq!(tampered[0]["reason"], "content_modified");
    assert_ne!(tampered[0]["expected_hash"], tampered[0]["actual_hash"]);
}

/// The reference platform's client requires these fields of every answer.
const REFERENCE_REQUIRED: [&str; 6] = [
    "correlation_id",
    "is_valid",
    "total_events",
    "verified_events",
    "verification_time",
    "message",
];

fn assert_reference_shape(report: &serde_json::Value) {
    for field in REFERENCE_REQUIRED {
        assert!(report.get(field).is_some(), "{field} missing: {report}");
    }
    let time = report["verification_time"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(time).unwrap();
    assert!(report["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn an_unknown_correlation_is_a_valid_chain_of_zero_events() {
    let app = spawn_app().await;
    let (status, report) = verify(&app, "never-seen").await;
    assert_eq!(status, 200, "{report}");
    assert_reference_shape(&report);
    assert_eq!(report["is_valid"], true);
    assert_eq!(report["total_events"], 0);
    assert_eq!(report["verified_events"], 0);
}

#[tokio::test]
async fn answers_carry_the_reference_fields_and_count_verified_events() {
    let app = spawn_app().await;
    let batch = events("corr-shape", 6);
    assert_eq!(app.post_batch(&batch).await.status(), 201);
    let (_, clean) = verify(&app, "corr-shape").await;
    assert_reference_shape(&clean);
    assert_eq!(
        (
            clean["total_events"].as_u64(),
            clean["verified_events"].as_u64()
        ),
        (Some(6), Some(6))
    );

    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.execute_batch("DROP TRIGGER audit_events_immutable")
        .unwrap();
    conn.execute(
        "UPDATE audit_events SET resource_id = 'elsewhere' WHERE event_id = ?1",
        [batch[2]["event_id"].as_str().unwrap()],
    )
    .unwrap();
    let (status, report) = verify(&app, "corr-shape").await;
    assert_eq!(status, 200);
    assert_reference_shape(&report);
    assert_eq!(report["is_valid"], false);
    assert_eq!(report["verified_events"], 5, "{report}");
}

/// A chain many chunks long verifies chunk by chunk, and tampering in the very
/// last chunk (the last event) is still found.
#[tokio::test]
async fn a_chain_longer_than_many_chunks_verifies_and_its_last_event_is_checked() {
    let app = spawn_app_with(|c| c.chain.verify_chunk_size = 7).await;
    let batch = events("corr-long", 100);
    assert_eq!(app.post_batch(&batch).await.status(), 201);
    let (_, clean) = verify(&app, "corr-long").await;
    assert_eq!(clean["is_valid"], true, "{clean}");
    assert_eq!(clean["verified_events"], 100);

    let victim = batch[99]["event_id"].as_str().unwrap();
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.execute_batch("DROP TRIGGER audit_events_immutable")
        .unwrap();
    conn.execute(
        "UPDATE audit_events SET event_data = '{\"n\":0}' WHERE event_id = ?1",
        [victim],
    )
    .unwrap();
    let (_, report) = verify(&app, "corr-long").await;
    assert_eq!(report["is_valid"], false);
    let reasons: Vec<(&str, &str)> = report["tampered_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["event_id"].as_str().unwrap(),
                t["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(reasons, [(victim, "content_modified")]);
}

#[tokio::test]
async fn chains_continue_across_batches_and_stay_separate_per_correlation() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let mut batch = events("corr-a", 4);
        batch.extend(events("corr-b", 2));
        assert_eq!(app.post_batch(&batch).await.status(), 201);
    }
    for (corr, total) in [("corr-a", 12), ("corr-b", 6)] {
        let (_, report) = verify(&app, corr).await;
        assert_eq!(report["is_valid"], true, "{report}");
        assert_eq!(report["total_events"], total);
        let mut seqs: Vec<i64> = app
            .all_events(corr)
            .await
            .iter()
            .map(|e| e["chain_seq"].as_i64().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=total).collect::<Vec<i64>>());
    }
}

#[tokio::test]
async fn hmac_chains_are_marked_and_verify_with_the_key() {
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("chain.key");
    std::fs::write(&key, "super-secret\n").unwrap();
    let app = spawn_app_with(|c| c.chain.hmac_key_file = Some(key.clone())).await;
    app.post_batch(&events("corr-hmac", 3)).await;
    let stored = app.all_events("corr-hmac").await;
    assert!(stored.iter().all(|e| e["hash_algorithm"] == "hmac-sha256"));
    let (_, report) = verify(&app, "corr-hmac").await;
    assert_eq!(report["is_valid"], true, "{report}");
}

/// Serves `db` with `adjust`ed chain keys, posts `count` events, verifies, stops.
async fn round(
    db: &std::path::Path,
    adjust: impl FnOnce(&mut datastorage::config::Config),
    count: usize,
) -> serde_json::Value {
    let db = db.to_owned();
    let app = spawn_app_with(|c| {
        c.store.sqlite.path = db;
        adjust(c);
    })
    .await;
    if count > 0 {
        assert_eq!(
            app.post_batch(&events("corr-rotate", count)).await.status(),
            201
        );
    }
    let (status, report) = verify(&app, "corr-rotate").await;
    assert_eq!(status, 200);
    app.stop.cancel();
    app.task.await.unwrap().unwrap();
    report
}

#[tokio::test]
async fn enabling_and_rotating_the_hmac_key_keeps_older_events_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let (key_a, key_b) = (dir.path().join("a.key"), dir.path().join("b.key"));
    std::fs::write(&key_a, "key-a-secret").unwrap();
    std::fs::write(&key_b, "key-b-secret").unwrap();

    // Unkeyed first, then key A is enabled, then rotated to B (A verify-only).
    let report = round(&db, |_| {}, 2).await;
    assert_eq!(report["is_valid"], true, "{report}");
    let a = key_a.clone();
    let report = round(&db, |c| c.chain.hmac_key_file = Some(a), 2).await;
    assert_eq!(report["is_valid"], true, "{report}");
    let (a, b) = (key_a.clone(), key_b.clone());
    let report = round(
        &db,
        |c| {
            c.chain.hmac_key_file = Some(b);
            c.chain.verify_only_key_files = vec![a];
        },
        2,
    )
    .await;
    assert_eq!(report["is_valid"], true, "{report}");
    assert_eq!(report["total_events"], 6);

    // Without key A the events it signed are named as such, not as modified.
    let b = key_b.clone();
    let report = round(&db, |c| c.chain.hmac_key_file = Some(b), 0).await;
    let reasons: Vec<&str> = report["tampered_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["unknown_key", "unknown_key"], "{report}");
}
