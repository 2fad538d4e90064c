//! The PostgreSQL schema: migrations, partitions, and failure classification.

use std::time::{Duration, Instant};

use chrono::Utc;
use datastorage::domain::chain::ChainHasher;
use datastorage::store::postgres::partitions::{month_start, partition_name};
use datastorage::store::postgres::{PostgresConfig, PostgresStore};
use datastorage::store::{EventStore, StoreError};
use datastorage::testing::pg::PgCluster;

async fn cluster() -> Option<PgCluster> {
    tokio::task::spawn_blocking(PgCluster::start_or_skip)
        .await
        .unwrap()
}

#[tokio::test]
async fn replicas_starting_together_migrate_once_and_create_four_monthly_partitions() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let config = cluster.default_config();
    let open = || PostgresStore::open(&config, ChainHasher::sha256());
    let (a, b, c) = tokio::join!(open(), open(), open());
    let _stores = (a.unwrap(), b.unwrap(), c.unwrap());

    let db = cluster.superuser().await.unwrap();
    let versions: i64 = db
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        versions as usize,
        datastorage::store::postgres::latest_version()
    );

    let partitions: Vec<String> = db
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'audit_events'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let today = Utc::now().date_naive();
    let mut expected: Vec<String> = (0..4)
        .map(|m| partition_name(month_start(today, m)))
        .collect();
    expected.push("audit_events_default".into());
    expected.sort();
    assert_eq!(partitions, expected);
}

#[tokio::test]
async fn events_land_in_their_month_and_older_months_in_the_default_partition() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let store = PostgresStore::open(&cluster.default_config(), ChainHasher::sha256())
        .await
        .unwrap();
    let now = audit_sdk::timestamp::normalize(Utc::now());
    let mut old = audit_sdk::AuditEvent::builder("test.event", "c-part")
        .category("test")
        .action("act")
        .actor("service", "t")
        .resource("thing", "r")
        .build();
    // Six days ago is within the accepted window and, near a month's start, in
    // the previous month; pin one event to last month's last day to be sure.
    old.event_timestamp = audit_sdk::timestamp::normalize(
        month_start(now.date_naive(), 0)
            .pred_opt()
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc(),
    );
    let mut fresh = old.clone();
    fresh.event_id = Some(uuid::Uuid::now_v7());
    fresh.event_timestamp = now;
    store.insert_batch(vec![old, fresh]).await.unwrap();

    let db = cluster.superuser().await.unwrap();
    let rows: Vec<(String, i64)> = db
        .query(
            "SELECT tableoid::regclass::text, chain_seq FROM audit_events ORDER BY chain_seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        [
            ("audit_events_default".to_owned(), 1),
            (partition_name(month_start(now.date_naive(), 0)), 2)
        ]
    );
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_quickly() {
    // Bound, then released: nothing listens there.
    let port = datastorage::testing::ports::free_port();
    let config = PostgresConfig {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_millis(500),
        // No startup allowance: the refusal is reported at once.
        startup_timeout: Duration::ZERO,
        ..PostgresConfig::default()
    };
    let started = Instant::now();
    let err = PostgresStore::open(&config, ChainHasher::sha256())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn the_store_answers_again_after_postgres_restarts() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let mut config = cluster.default_config();
    config.wait_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_millis(500);
    let store = PostgresStore::open(&config, ChainHasher::sha256())
        .await
        .unwrap();
    store.ping().await.unwrap();
    let stopped = std::thread::scope(|s| s.spawn(|| cluster.stop()).join().unwrap());
    stopped.unwrap();
    let started = Instant::now();
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "fails fast");
    std::thread::scope(|s| s.spawn(|| cluster.restart()).join().unwrap()).unwrap();
    // The pool replaces the dead connections by itself.
    store.ping().await.unwrap();
    store
        .insert_batch(vec![audit_sdk::AuditEvent::builder("t.e", "c-restart")
            .category("t")
            .action("a")
            .actor("service", "t")
            .resource("thing", "r")
            .build()])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_before_postgres_is_up_waits_for_it_within_startup_timeout() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let mut config = cluster.default_config();
    config.connect_timeout = Duration::from_millis(500);
    tokio::task::block_in_place(|| cluster.stop()).unwrap();

    // Without a startup allowance the refusal is immediate (the negative control).
    let impatient = PostgresConfig {
        startup_timeout: Duration::ZERO,
        ..config.clone()
    };
    let err = PostgresStore::open(&impatient, ChainHasher::sha256())
        .await
        .expect_err("nothing listens yet");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    // With one, opening keeps retrying until the server comes up.
    config.startup_timeout = Duration::from_secs(60);
    let opening =
        tokio::spawn(async move { PostgresStore::open(&config, ChainHasher::sha256()).await });
    tokio::task::block_in_place(|| cluster.restart()).unwrap();
    let store = tokio::time::timeout(Duration::from_secs(30), opening)
        .await
        .expect("open finishes once PostgreSQL is up")
        .unwrap()
        .unwrap();
    store.ping().await.unwrap();
}

/// `datastorage migrate` as the Kubernetes init container runs it: the real
/// binary, configured by environment, against a server that is up, then one
/// that is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_command_applies_every_migration_and_fails_when_postgres_stays_down() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let migrate = |port: u16, startup_timeout: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_datastorage"))
            .arg("migrate")
            .env("DATASTORAGE_STORE__BACKEND", "postgres")
            .env("DATASTORAGE_STORE__POSTGRES__HOST", "127.0.0.1")
            .env("DATASTORAGE_STORE__POSTGRES__PORT", port.to_string())
            .env("DATASTORAGE_STORE__POSTGRES__USER", "postgres")
            .env("DATASTORAGE_STORE__POSTGRES__DBNAME", "postgres")
            .env("DATASTORAGE_STORE__POSTGRES__CONNECT_TIMEOUT", "500ms")
            .env(
                "DATASTORAGE_STORE__POSTGRES__STARTUP_TIMEOUT",
                startup_timeout,
            )
            .env("DATASTORAGE_LOG__FORMAT", "json")
            .output()
            .expect("run datastorage migrate")
    };

    let out = tokio::task::block_in_place(|| migrate(cluster.port(), "10s"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = cluster.superuser().await.unwrap();
    let versions: i64 = db
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        versions as usize,
        datastorage::store::postgres::latest_version()
    );
    // Running it again is a no-op, not an error (init containers rerun).
    let again = tokio::task::block_in_place(|| migrate(cluster.port(), "10s"));
    assert!(again.status.success());

    // Nothing listens: after its startup allowance it exits non-zero, saying why.
    let nobody = datastorage::testing::ports::free_port();
    let started = Instant::now();
    let down = tokio::task::block_in_place(|| migrate(nobody, "1s"));
    assert!(!down.status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.contains(&format!("migrating PostgreSQL at 127.0.0.1:{nobody}")),
        "{stderr}"
    );
    // It retried (and said so) before giving up.
    let log = String::from_utf8_lossy(&down.stdout);
    assert!(log.contains("PostgreSQL is not reachable yet"), "{log}");
}

#[tokio::test]
async fn chain_heads_only_move_forward_even_for_the_owner() {
    let Some(cluster) = cluster().await else {
        return;
    };
    let store = PostgresStore::open(&cluster.default_config(), ChainHasher::sha256())
        .await
        .unwrap();
    let events: Vec<_> = (0..3)
        .map(|n| {
            audit_sdk::AuditEvent::builder("test.event", "corr-heads")
                .category("test")
                .action("act")
                .actor("service", "tester")
                .resource("thing", format!("r{n}"))
                .build()
        })
        .collect();
    store.insert_batch(events).await.unwrap();
    // The superuser owns everything, so only the trigger can refuse these.
    let db = cluster.superuser().await.unwrap();
    let mut refused = 0;
    for sql in [
        "UPDATE audit_chain_heads SET chain_seq = 2 WHERE correlation_id = 'corr-heads'",
        "UPDATE audit_chain_heads SET chain_seq = 3, event_hash = 'x' \
         WHERE correlation_id = 'corr-heads'",
        "UPDATE audit_chain_heads SET correlation_id = 'other' WHERE correlation_id = 'corr-heads'",
        "DELETE FROM audit_chain_heads WHERE correlation_id = 'corr-heads'",
        "TRUNCATE audit_chain_heads",
    ] {
        let err = db.batch_execute(sql).await.expect_err(sql);
        let code = err.code().map(|c| c.code().to_owned()).unwrap_or_default();
        assert_eq!(code, "42501", "{sql}: {err:?}");
        refused += 1;
    }
    // Forward is what batches do; it stays allowed.
    db.batch_execute(
        "UPDATE audit_chain_heads SET chain_seq = 4 WHERE correlation_id = 'corr-heads'",
    )
    .await
    .unwrap();
    println!("chain heads: {refused} rewriting statements refused, a forward move allowed");
}
