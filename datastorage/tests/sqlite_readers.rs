//! SQLite reads (queries, verify, `/readyz`'s ping) never wait behind a write:
//! WAL lets readers run beside the writer, so the store must not serialise them.

use std::time::{Duration, Instant};

use audit_sdk::AuditEvent;
use datastorage::domain::chain::ChainHasher;
use datastorage::store::sqlite::{SqliteConfig, SqliteStore};
use datastorage::store::EventStore;

#[tokio::test]
async fn reads_answer_while_a_batch_waits_for_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("audit.db"),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(&config, ChainHasher::sha256())
        .await
        .unwrap();
    store.ping().await.unwrap();

    // Another process's write transaction holds SQLite's write lock, so the
    // store's batch waits (up to its busy timeout) with its writer taken.
    let blocker = rusqlite::Connection::open(&config.path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let writer = store.clone();
    let batch = tokio::spawn(async move {
        let event = AuditEvent::builder("t.e", "c")
            .category("c")
            .action("a")
            .actor("service", "s")
            .resource("r", "i")
            .build();
        writer.insert_batch(vec![event]).await
    });
    // No signal says "the batch now holds the writer"; give it time to get there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !batch.is_finished(),
        "the batch must be waiting for the lock"
    );

    let started = Instant::now();
    store.ping().await.unwrap();
    let waited = started.elapsed();
    println!("ping answered in {waited:?} while a batch waited for the write lock");
    assert!(
        waited < Duration::from_secs(1),
        "ping waited {waited:?} behind the writer"
    );

    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(batch.await.unwrap().unwrap().created, 1);
}
