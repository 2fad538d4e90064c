//! `record_durable()` throughput with 64 concurrent callers (group commit:
//! one fdatasync per burst), against the baseline measured in the same run
//! and on the same disk: each event's bytes written and `fdatasync`ed on its
//! own, which is what a durable acknowledgement costs without group commit.
//!
//! `cargo bench -p audit-sdk --bench durable [-- EVENTS]`

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_sdk::{AuditConfig, AuditStore};
use datastorage::testing::bench::{report, sample_events};

const CALLERS: usize = 64;

/// Raw `write + fdatasync` per event of the same JSON bytes.
fn raw_fdatasync(total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("raw")).unwrap();
    let payloads: Vec<Vec<u8>> = sample_events(total, "rr-raw", 100)
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    let started = Instant::now();
    for p in &payloads {
        file.write_all(p).unwrap();
        file.sync_data().unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn durable(total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // DataStorage unreachable: only the spool path is timed.
        let mut config = AuditConfig::new("http://127.0.0.1:9");
        config.buffer_capacity = total + 1;
        config.spool_dir = Some(dir.path().to_owned());
        config.shutdown_timeout = Duration::ZERO;
        let store = Arc::new(AuditStore::new(config).unwrap());
        let mut batches: Vec<Vec<_>> = (0..CALLERS).map(|_| Vec::new()).collect();
        for (i, e) in sample_events(total, "rr-durable", 100)
            .into_iter()
            .enumerate()
        {
            batches[i % CALLERS].push(e);
        }
        let started = Instant::now();
        let tasks: Vec<_> = batches
            .into_iter()
            .map(|batch| {
                let store = store.clone();
                tokio::spawn(async move {
                    for e in batch {
                        store.record_durable(e).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        store.close().await;
        rate
    })
}

fn main() {
    let total: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(20_000);
    let raw = raw_fdatasync(total.min(5_000));
    let group = durable(total);
    println!("audit-sdk durable: {total} events, {CALLERS} callers");
    println!("{:<28} {:>12} {:>8}", "path", "events/s", "ratio");
    println!(
        "{:<28} {:>12.0} {:>8.2}",
        "write+fdatasync per event", raw, 1.0
    );
    println!(
        "{:<28} {:>12.0} {:>8.2}",
        "record_durable x64",
        group,
        group / raw
    );
    report(
        "audit-sdk",
        "record_durable x64",
        group,
        "events/s",
        Some(("write+fdatasync per event", raw)),
    );
}
