//! Batch ingest throughput: HTTP into SQLite, against SQLite alone.
//!
//! Run with `cargo bench -p datastorage --bench ingest` (optional arguments:
//! total events, batch size, concurrent HTTP clients). Three measurements in one
//! run, on the same generated events:
//!
//! 1. `http`: batches POSTed to a real DataStorage on loopback (parse, validate,
//!    hash, store, answer);
//! 2. `store`: the same batches handed to the store directly (hash + store, no HTTP);
//! 3. `direct`: the same rows inserted with a prepared rusqlite statement in one
//!    transaction per batch, with precomputed hashes (the floor SQLite sets).
//!
//! Ratios are reported against `direct`. `http+auth` repeats `http` with
//! static-token authentication on, to show what the auth check costs.
//!
//! Then a database of 1,000,000 events over 10,000 correlation ids (written
//! directly) is served, and `GET /api/v1/audit/events?correlation_id=…` is
//! timed alone and while HTTP batch ingest runs beside it: the readers use
//! WAL's concurrent read-only connections, so they must not queue behind the
//! writer.

use std::time::{Duration, Instant};

use audit_sdk::AuditEvent;
use chrono::Utc;
use datastorage::domain::chain::ChainHasher;
use datastorage::store::sqlite::{rows, SqliteConfig, SqliteStore};
use datastorage::store::EventStore;
use datastorage::testing::bench::{
    loopback_config, post_batches, report, runs_of_events, sample_events, CorrelationQueries,
    Served,
};

/// The allocator of the `datastorage` binary (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A static token for the `http+auth` measurement.
const BENCH_TOKEN: &str = "bench-writer-token-0123456789";

async fn bench_http(
    events: &[AuditEvent],
    batch: usize,
    clients: usize,
    with_auth: bool,
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config();
    config.store.sqlite.path = dir.path().join("audit.db");
    if with_auth {
        let tokens = dir.path().join("tokens.yaml");
        std::fs::write(
            &tokens,
            format!("{BENCH_TOKEN}: {{subject: bench, verbs: [create]}}\n"),
        )
        .unwrap();
        config.auth.mode = auth::AuthMode::Static;
        config.auth.tokens_file = Some(tokens);
    }
    let served = Served::start(config).await;
    let url = format!("{}/api/v1/audit/events/batch", served.base);

    let elapsed = post_batches(
        &url,
        events,
        batch,
        clients,
        with_auth.then_some(BENCH_TOKEN),
    )
    .await;
    served.stop().await;
    elapsed
}

async fn bench_store(events: &[AuditEvent], batch: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("audit.db"),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(&config, ChainHasher::sha256())
        .await
        .unwrap();
    let batches: Vec<Vec<AuditEvent>> = events.chunks(batch).map(<[_]>::to_vec).collect();
    let started = Instant::now();
    for b in batches {
        store.insert_batch(b).await.unwrap();
    }
    let elapsed = started.elapsed();
    store.close().await;
    elapsed
}

fn bench_direct(events: &[AuditEvent], batch: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").ok();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    datastorage::store::sqlite::migrate(&mut conn).unwrap();
    let hash = "0".repeat(64);
    let now = Utc::now().timestamp_micros();
    let started = Instant::now();
    for (b, chunk) in events.chunks(batch).enumerate() {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx.prepare_cached(rows::INSERT).unwrap();
            for (i, e) in chunk.iter().enumerate() {
                let link = rows::ChainLink {
                    seq: (b * batch + i) as i64 + 1,
                    previous_hash: &hash,
                    hash: &hash,
                    algorithm: "sha256",
                    key_id: None,
                };
                rows::insert(&mut stmt, e, &link, now).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    started.elapsed()
}

const QUERY_TABLE_ROWS: usize = 1_000_000;
const QUERY_CORRELATIONS: usize = 10_000;
const QUERIES: usize = 2_000;

/// Writes `QUERY_TABLE_ROWS` events over `QUERY_CORRELATIONS` chains straight
/// into a new database at `path`.
fn fill_for_queries(path: &std::path::Path) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").ok();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    datastorage::store::sqlite::migrate(&mut conn).unwrap();
    let hash = "0".repeat(64);
    let now = Utc::now().timestamp_micros();
    let chunk = 100_000;
    for start in (0..QUERY_TABLE_ROWS).step_by(chunk) {
        let events = sample_events(chunk, "rr-query", QUERY_CORRELATIONS);
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx.prepare_cached(rows::INSERT).unwrap();
            for (i, e) in events.iter().enumerate() {
                let link = rows::ChainLink {
                    seq: ((start + i) / QUERY_CORRELATIONS) as i64 + 1,
                    previous_hash: &hash,
                    hash: &hash,
                    algorithm: "sha256",
                    key_id: None,
                };
                rows::insert(&mut stmt, e, &link, now).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

/// The correlation query on a 1M-event database, alone and during ingest.
async fn bench_queries(batch: usize, clients: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let started = Instant::now();
    fill_for_queries(&path);
    println!(
        "\nquery database: {QUERY_TABLE_ROWS} events (filled in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let mut config = loopback_config();
    config.store.sqlite.path = path;
    let served = Served::start(config).await;
    let base = served.base.clone();
    let queries = CorrelationQueries {
        base: &base,
        prefix: "rr-query",
        correlations: QUERY_CORRELATIONS,
        queries: QUERIES,
    };
    queries
        .quiet_and_during_ingest(
            "datastorage correlation query (SQLite, 1M rows)",
            runs_of_events(QUERIES * 50, "rr-during", 10),
            batch,
            clients,
        )
        .await;
    served.stop().await;
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; positional numbers override the defaults.
    let numbers: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let total = numbers.first().copied().unwrap_or(100_000);
    let batch = numbers.get(1).copied().unwrap_or(1000);
    let clients = numbers.get(2).copied().unwrap_or(4);
    let events = sample_events(total, "rr-bench", 100);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Warm-up (page cache, allocator, connection pool), not reported.
    let warm = &events[..events.len().min(batch * 5)];
    runtime.block_on(bench_http(warm, batch, clients, false));

    // Auth off and on alternate so drift of the machine affects both alike.
    let mut http = Duration::ZERO;
    let mut http_auth = Duration::ZERO;
    for _ in 0..2 {
        http += runtime.block_on(bench_http(&events, batch, clients, false));
        http_auth += runtime.block_on(bench_http(&events, batch, clients, true));
    }
    let (http, http_auth) = (http / 2, http_auth / 2);
    let store = runtime.block_on(bench_store(&events, batch));
    let direct = bench_direct(&events, batch);

    let base = rate(total, direct);
    println!("datastorage ingest: {total} events, batches of {batch}, {clients} HTTP clients");
    println!(
        "{:<10} {:>12} {:>14} {:>14}",
        "path", "seconds", "events/s", "ratio/direct"
    );
    for (name, d) in [
        ("http", http),
        ("http+auth", http_auth),
        ("store", store),
        ("direct", direct),
    ] {
        println!(
            "{:<10} {:>12.3} {:>14.0} {:>14.2}",
            name,
            d.as_secs_f64(),
            rate(total, d),
            rate(total, d) / base
        );
        if name != "direct" {
            report(
                "datastorage ingest (SQLite)",
                name,
                rate(total, d),
                "events/s",
                Some(("direct rusqlite", base)),
            );
        }
    }
    println!(
        "static auth costs {:+.1}% of HTTP ingest throughput",
        (rate(total, http_auth) / rate(total, http) - 1.0) * 100.0
    );
    runtime.block_on(bench_queries(batch, clients));
}
