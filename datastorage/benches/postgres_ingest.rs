//! PostgreSQL ingest and query: HTTP batch ingest against raw binary COPY, and a
//! `correlation_id` query on a table of 1,000,000 events.
//!
//! Run with `cargo bench -p datastorage --bench postgres_ingest` (optional
//! arguments: events per measurement, batch size, concurrent HTTP clients,
//! correlations of the shared-chains shape; `BENCH_PG_PROFILE=1` adds a table
//! of PostgreSQL's time per statement from `pg_stat_statements`). It
//! starts a throwaway PostgreSQL cluster from the machine's server binaries (see
//! `datastorage::testing::pg`) tuned for a disposable benchmark — the settings,
//! including `fsync=off` and `synchronous_commit=off`, are printed — and measures:
//!
//! 1. `http`: batches POSTed to a real DataStorage on loopback (parse, validate,
//!    claim the ids, lock the correlations, hash, `UNNEST` insert, advance the
//!    chain heads), in two shapes: runs of 10 events per correlation, as a
//!    Gateway writes them (its replicas write disjoint remediation requests,
//!    each a few events within moments), and every batch on the same 1,000
//!    correlations (each batch waits for the previous one's chain locks: the
//!    worst case for chained storage, kept to show what sharing costs);
//! 2. `copy`: the same rows (fresh ids, precomputed hashes) written by one binary
//!    `COPY` into the same table: the floor PostgreSQL sets; each shape runs
//!    three rounds of HTTP then COPY, each measurement after a `CHECKPOINT`
//!    and a `sync` (so none pays the previous one's write-back), and the
//!    medians are compared;
//! 3. `query` (run first, on the fresh cluster; 1 and 2 then use their own
//!    database): the table is filled to 1,000,000 events (10,000 correlation ids)
//!    and `GET /api/v1/audit/events?correlation_id=…` (default page of 100) is
//!    timed; p50 / p99 / max;
//! 4. `query p99 during ingest`: the same queries while HTTP batch ingest of
//!    100,000 more (Gateway-shaped) events runs beside them (against the quiet
//!    p99).

use std::time::Instant;

use audit_sdk::AuditEvent;
use chrono::Utc;
use datastorage::config::Backend;
use datastorage::domain::chain::ChainHasher;
use datastorage::store::postgres::{
    PostgresConfig, COPY_COLUMNS, COPY_TYPES, EVENT_AND_LINK_COLUMNS,
};
use datastorage::testing::bench::{
    loopback_config, median, post_batches, report, runs_of_events, sample_events,
    CorrelationQueries, Served,
};
use datastorage::testing::pg::{connect, PgCluster};
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;

/// Durability is irrelevant for a disposable cluster; the rest sizes memory and
/// WAL for a 2-core, 24 GiB machine.
const BENCH_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("shared_buffers", "1GB"),
    ("max_wal_size", "8GB"),
    ("checkpoint_timeout", "30min"),
    ("wal_buffers", "64MB"),
    ("max_connections", "100"),
];

/// The allocator of the `datastorage` binary (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const QUERY_TABLE_ROWS: usize = 1_000_000;
const QUERY_CORRELATIONS: usize = 10_000;
/// Rows of other (Gateway-shaped) correlations in the query table: the table
/// this figure was first measured on held the ingest runs' 400,000 rows, so
/// each queried correlation has 60 events.
const QUERY_TABLE_OTHER_ROWS: usize = 400_000;
const QUERIES: usize = 2_000;

/// A row ready for COPY: the event plus its chain fields, hashed beforehand.
struct CopyRow {
    event: AuditEvent,
    data: serde_json::Value,
    seq: i64,
    previous: String,
    hash: String,
}

fn chain_rows(events: Vec<AuditEvent>) -> Vec<CopyRow> {
    let hasher = ChainHasher::sha256();
    let mut heads: std::collections::HashMap<String, (i64, String)> = Default::default();
    events
        .into_iter()
        .map(|event| {
            let head = heads.entry(event.correlation_id.clone()).or_default();
            let hash = hasher.hash(&head.1, &event);
            let previous = std::mem::replace(&mut head.1, hash.clone());
            head.0 += 1;
            CopyRow {
                data: serde_json::Value::Object(event.event_data.clone()),
                event,
                seq: head.0,
                previous,
                hash,
            }
        })
        .collect()
}

/// Binary COPY of `rows` in one statement; returns the rows written.
async fn copy(db: &tokio_postgres::Client, rows: &[CopyRow]) -> u64 {
    // The server's own columns, less the legal hold and key id it adds.
    let sink = db
        .copy_in(&format!(
            "COPY audit_events ({}) FROM STDIN (FORMAT binary)",
            COPY_COLUMNS[..EVENT_AND_LINK_COLUMNS].join(", ")
        ))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES[..EVENT_AND_LINK_COLUMNS]);
    pin_mut!(writer);
    let stored_at = Utc::now();
    for r in rows {
        let e = &r.event;
        let date = e.event_timestamp.date_naive();
        let retention = e.retention_days as i32;
        let values: [&(dyn ToSql + Sync); EVENT_AND_LINK_COLUMNS] = [
            &e.event_id,
            &e.version,
            &e.event_type,
            &e.event_timestamp,
            &date,
            &e.event_category,
            &e.event_action,
            &e.event_outcome.as_str(),
            &e.actor_type,
            &e.actor_id,
            &e.actor_ip,
            &e.resource_type,
            &e.resource_id,
            &e.correlation_id,
            &e.parent_event_id,
            &e.namespace,
            &e.cluster_id,
            &e.severity,
            &e.duration_ms,
            &e.error_code,
            &e.error_message,
            &retention,
            &e.is_sensitive,
            &r.data,
            &r.seq,
            &r.previous,
            &r.hash,
            &"sha256",
            &stored_at,
        ];
        writer.as_mut().write(&values).await.unwrap();
    }
    writer.finish().await.unwrap()
}

/// Consecutive events sharing a correlation in the Gateway-shaped run.
const PER_CORRELATION: usize = 10;

/// Rounds of HTTP-then-COPY per shape: one COPY of 200,000 rows measured from
/// 31,000 to 45,000 events/s in consecutive runs of this bench (WAL and
/// buffer state left by what ran before), so each figure is a median.
const ROUNDS: usize = 3;

/// `events` POSTed over HTTP, then the same rows (fresh ids, own correlation
/// ids) by one binary COPY; both rates in events/s.
async fn ingest_against_copy(
    db: &tokio_postgres::Client,
    url: &str,
    events: Vec<AuditEvent>,
    batch: usize,
    clients: usize,
) -> (f64, f64) {
    let total = events.len();
    settle(db).await;
    let http = post_batches(url, &events, batch, clients, None).await;
    let rows = chain_rows(
        events
            .into_iter()
            .map(|mut e| {
                e.event_id = Some(uuid::Uuid::now_v7());
                e.correlation_id = e.correlation_id.replacen("rr-http", "rr-copy", 1);
                e
            })
            .collect(),
    );
    settle(db).await;
    let started = Instant::now();
    let copied = copy(db, &rows).await;
    let copy_time = started.elapsed();
    assert_eq!(copied as usize, total);
    (
        total as f64 / http.as_secs_f64(),
        total as f64 / copy_time.as_secs_f64(),
    )
}

/// Starts a measurement from a clean slate: every dirty buffer written
/// (`CHECKPOINT`) and the kernel's page cache flushed (`sync`). With fsync
/// off, the previous measurement's writes are otherwise written back by the
/// kernel during the next one, which then pays for them: rounds of the same
/// shape measured 27,000 to 38,000 events/s, the first round of each shape
/// (after the query table's 1M rows) the slowest.
async fn settle(db: &tokio_postgres::Client) {
    db.batch_execute("CHECKPOINT").await.unwrap();
    let synced = tokio::process::Command::new("sync").status().await;
    assert!(synced.is_ok_and(|s| s.success()), "sync failed");
}

/// A DataStorage on `postgres`.
async fn serve(postgres: PostgresConfig) -> Served {
    let mut config = loopback_config();
    config.store.backend = Backend::Postgres;
    config.store.postgres = postgres;
    Served::start(config).await
}

/// With `BENCH_PG_PROFILE=1`: where PostgreSQL spent its time, per statement.
async fn print_statement_profile(db: &tokio_postgres::Client) {
    let rows = db
        .query(
            "SELECT calls, total_exec_time, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) \
             FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12",
            &[],
        )
        .await
        .unwrap();
    println!("\n  PostgreSQL time by statement (pg_stat_statements):");
    for r in rows {
        let (calls, total, mean, query): (i64, f64, f64, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        println!("    {calls:>7} calls {total:>9.0} ms total {mean:>8.3} ms mean  {query}");
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(200_000);
    let batch = args.get(1).copied().unwrap_or(1000);
    let clients = args.get(2).copied().unwrap_or(4);
    // Correlation ids the events are spread over: every batch touches up to
    // this many chains, each needing its head read, locked and advanced.
    let correlations = args.get(3).copied().unwrap_or(1000).max(1);

    // BENCH_PG_PROFILE=1 adds pg_stat_statements and prints its table.
    let profile = std::env::var_os("BENCH_PG_PROFILE").is_some();
    let mut settings = BENCH_SETTINGS.to_vec();
    if profile {
        settings.push(("shared_preload_libraries", "pg_stat_statements"));
    }
    let cluster = match PgCluster::start_with(&settings) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("postgres_ingest: cannot start PostgreSQL: {reason}");
            std::process::exit(if std::env::var_os("CI").is_some() {
                1
            } else {
                0
            });
        }
    };
    println!("PostgreSQL bench cluster settings (disposable; NOT production durability):");
    for (k, v) in BENCH_SETTINGS {
        println!("  {k} = {v}");
    }

    let db = cluster.superuser().await.unwrap();
    if profile {
        db.batch_execute("CREATE EXTENSION pg_stat_statements")
            .await
            .unwrap();
    }
    // (c) Fill to 1,000,000 events (600,000 over the 10,000 queried
    // correlation ids), then query;
    // on the fresh cluster, before the ingest rounds.
    let served = serve(cluster.default_config()).await;
    let base = served.base.clone();
    let present: i64 = db
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    let missing = QUERY_TABLE_ROWS.saturating_sub(present as usize);
    let other = QUERY_TABLE_OTHER_ROWS.min(missing);
    let fill_started = Instant::now();
    let fill = runs_of_events(other, "rr-other", PER_CORRELATION)
        .into_iter()
        .chain(sample_events(
            missing - other,
            "rr-query",
            QUERY_CORRELATIONS,
        ));
    let fill: Vec<AuditEvent> = fill.collect();
    for chunk in fill.chunks(200_000) {
        copy(&db, &chain_rows(chunk.to_vec())).await;
    }
    db.batch_execute("VACUUM ANALYZE audit_events")
        .await
        .unwrap();
    let rows_now: i64 = db
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "\nquery table: {rows_now} events (filled in {:.1} s)",
        fill_started.elapsed().as_secs_f64()
    );
    // (d) The same queries while HTTP batch ingest runs beside them.
    let during = runs_of_events(QUERIES * 50, "rr-during", PER_CORRELATION);
    let queries = CorrelationQueries {
        base: &base,
        prefix: "rr-query",
        correlations: QUERY_CORRELATIONS,
        queries: QUERIES,
    };
    queries
        .quiet_and_during_ingest(
            "datastorage correlation query (PostgreSQL, 1M rows)",
            during,
            batch,
            clients,
        )
        .await;

    served.stop().await;

    // The ingest rounds (2.4M rows) run after the query timings, in their own
    // database: run first, their writes (and the kernel's write-back of them,
    // fsync being off) slowed the query table's fill fourfold and doubled its
    // quiet p99; sharing the query's database, they would grow its table.
    db.batch_execute("CREATE DATABASE ingest").await.unwrap();
    let ingest_config = cluster.config("ingest");
    let ingest_db = connect(&ingest_config).await.unwrap();
    let served = serve(ingest_config).await;
    let base = served.base.clone();
    let url = format!("{base}/api/v1/audit/events/batch");
    // (a) + (b), in two shapes. The Gateway's: runs of a few events per
    // correlation, so concurrent batches write disjoint chains. And the
    // adversarial one this bench measured first: every batch writes the same
    // `correlations` chains, so batches queue for each other's chain locks.
    type Shape = Box<dyn Fn(usize) -> Vec<AuditEvent>>;
    let shapes: [(String, Shape); 2] = [
        (
            format!("{PER_CORRELATION} events per correlation"),
            Box::new(move |round| {
                runs_of_events(total, &format!("rr-http-runs{round}"), PER_CORRELATION)
            }),
        ),
        (
            format!("every batch on the same {correlations} correlations"),
            Box::new(move |round| {
                sample_events(total, &format!("rr-http-shared{round}"), correlations)
            }),
        ),
    ];
    println!(
        "\ningest of {total} events (batch {batch}, {clients} HTTP clients), \
         HTTP against binary COPY of the same rows, median of {ROUNDS} alternating rounds:"
    );
    for (shape, events) in shapes {
        let mut http = Vec::with_capacity(ROUNDS);
        let mut copy = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let (h, c) = ingest_against_copy(&ingest_db, &url, events(round), batch, clients).await;
            http.push(h);
            copy.push(c);
        }
        let rounds: Vec<String> = http
            .iter()
            .zip(&copy)
            .map(|(h, c)| format!("{h:.0}/{c:.0}"))
            .collect();
        let (http, copy) = (median(http), median(copy));
        println!(
            "  {shape} (rounds, http/copy events/s: {}):",
            rounds.join(", ")
        );
        println!("    http  {:>10.0} events/s", http);
        println!("    copy  {:>10.0} events/s", copy);
        println!("    http / copy = {:.2}", http / copy);
        report(
            "datastorage ingest (PostgreSQL)",
            &format!("http ({shape})"),
            http,
            "events/s",
            Some(("binary COPY", copy)),
        );
    }
    if profile {
        print_statement_profile(&db).await;
    }
    served.stop().await;
}
