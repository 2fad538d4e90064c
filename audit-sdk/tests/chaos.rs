//! Process-level chaos: a child process embedding the SDK records a stream
//! with durable acknowledgement (`record_durable`) while a real DataStorage
//! process is SIGKILLed and restarted, and the child itself is SIGKILLed at
//! random points. Afterwards every event whose durable acknowledgement
//! returned is stored exactly once, counted from DataStorage's query answers
//! (which would show a second row for an id, were one stored).
//!
//! Budget: `ROUNDS` rounds (one child kill and one DataStorage kill each),
//! a few seconds in all. The seed is printed; `CHAOS_SEED` replays a run.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use audit_sdk::AuditStore;
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const ROUNDS: usize = 6;

/// xorshift64*: enough randomness for kill points, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        Duration::from_millis(lo + r % (hi - lo))
    }
}

/// Collects `DURABLE <id>` lines for `d` (or until the child's output ends).
async fn collect(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    d: Duration,
    acked: &mut Vec<uuid::Uuid>,
) {
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        if let Some(id) = line.strip_prefix("DURABLE ") {
            acked.push(uuid::Uuid::parse_str(id).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durably_acknowledged_events_survive_sigkills_of_both_processes_exactly_once() {
    let started = Instant::now();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let spool = dir.path().join("spool");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start_process(&db, port).await;
    let (mut child_kills, mut server_kills) = (0, 0);
    let mut acked = Vec::new();
    for _ in 0..ROUNDS {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-sdk-test-child"))
            .env("CHILD_MODE", "durable")
            .env("CHILD_URL", &url)
            .env("CHILD_SPOOL", &spool)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        collect(&mut lines, rng.millis(100, 400), &mut acked).await;
        server.child.kill().await.unwrap(); // SIGKILL
        server_kills += 1;
        collect(&mut lines, rng.millis(50, 300), &mut acked).await;
        server = start_process(&db, port).await;
        collect(&mut lines, rng.millis(50, 400), &mut acked).await;
        child.kill().await.unwrap(); // SIGKILL, mid-stream
        child_kills += 1;
        // Lines written before the kill are still in the pipe.
        collect(&mut lines, Duration::from_millis(200), &mut acked).await;
    }

    // A last store on the same spool delivers what the children left.
    let mut config = sdk_config(&url);
    config.spool_dir = Some(spool.clone());
    let store = AuditStore::new(config).unwrap();
    store.flush_timeout(Duration::from_secs(60)).await.unwrap();
    let report = store.close().await;

    let stored = stored_ids(&url, "corr-child").await;
    let mut rows: HashMap<&str, usize> = HashMap::new();
    for id in &stored {
        *rows.entry(id.as_str()).or_default() += 1;
    }
    let twice = rows.values().filter(|n| **n > 1).count();
    let missing = acked
        .iter()
        .filter(|id| !rows.contains_key(id.to_string().as_str()))
        .count();
    println!(
        "chaos seed={seed}: {child_kills} child SIGKILLs, {server_kills} DataStorage SIGKILLs, \
         {} durable acks, {} rows stored ({} distinct ids), {twice} ids stored twice, \
         {missing} acknowledged events missing, last store delivered {} and lost {}, {:?}",
        acked.len(),
        stored.len(),
        rows.len(),
        report.delivered,
        report.lost,
        started.elapsed()
    );
    assert!(child_kills >= 5 && server_kills >= 5);
    assert!(
        acked.len() > 100,
        "too few acknowledgements to mean anything"
    );
    assert_eq!(missing, 0, "durably acknowledged events lost (seed {seed})");
    assert_eq!(twice, 0, "events stored twice (seed {seed})");
    assert_eq!(report.lost, 0);
    drop(server);
}
