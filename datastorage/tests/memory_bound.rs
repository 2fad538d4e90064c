//! The real binary under 16 concurrent worst-case ingest bodies stays inside a
//! 256 MiB pod limit, and still answers correctly afterwards.
//!
//! "Worst case" is what costs the most memory per byte of body once parsed:
//! many tiny JSON objects (each a map node of ~600 bytes for ~8 bytes of text),
//! at the top level and inside `event_data`, a valid batch of the largest
//! `event_data` made of tiny objects, long arrays of small numbers, long
//! strings, and deep nesting. The child's peak resident set (`VmHWM`) is the
//! measure; a watcher kills it early if it runs away, so a regression cannot
//! take the shared machine down with it.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::event;
use datastorage::testing::ports::free_port;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// The pod memory limit the service must survive.
const LIMIT_BYTES: u64 = 256 * 1024 * 1024;
/// Past this the watcher kills the child (the test has failed by then anyway).
const RUNAWAY_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// The default `limits.max_body_bytes`.
const BODY_MAX: usize = 5 * 1024 * 1024;
/// Concurrent clients, the default `limits.max_concurrent_requests`.
const CLIENTS: usize = 16;
/// Bodies each client sends, one after another.
const ROUNDS: usize = 2;

/// The valid body of one event of the largest, costliest `event_data`.
const HEAVY_ONE: &str = "1 valid event of tiny-object event_data";

/// `[{"a":0},…]` up to just under `max` bytes, between `open` and `close`.
fn repeat_within(open: &str, item: &str, close: &str, max: usize) -> String {
    let mut s = String::with_capacity(max);
    s.push_str(open);
    let mut first = true;
    while s.len() + item.len() + 1 + close.len() < max {
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(item);
    }
    s.push_str(close);
    s
}

/// One event (as JSON text) whose `event_data` is `{"x": <data>}`.
fn event_with_data(n: usize, data: &str) -> String {
    let mut e = event("rr-memory", n);
    e["event_data"] = json!({ "x": "__DATA__" });
    e.to_string().replace("\"__DATA__\"", data)
}

/// The worst-case bodies, each at most `BODY_MAX` bytes.
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    // 1. The batch array itself: 650 000 tiny objects (400: too many events).
    out.push((
        "tiny objects as batch items",
        repeat_within("[", r#"{"a":0}"#, "]", BODY_MAX).into_bytes(),
    ));
    // 2. One event whose event_data is 5 MiB of tiny objects (400: too big).
    let data = repeat_within("[", r#"{"a":0}"#, "]", BODY_MAX - 1024);
    out.push((
        "tiny objects in one event_data",
        format!("[{}]", event_with_data(0, &data)).into_bytes(),
    ));
    // 3. Valid events whose event_data (just under 256 KiB) is tiny objects: a
    // batch of 20 of them (413: ~450 MB once parsed), and one alone (stored).
    let data = repeat_within("[", r#"{"a":0}"#, "]", 250 * 1024);
    let one = event_with_data(0, &data);
    let count = BODY_MAX / (one.len() + 1);
    let events: Vec<String> = (0..count).map(|n| event_with_data(n, &data)).collect();
    out.push((
        "20 valid events of tiny-object event_data",
        format!("[{}]", events.join(",")).into_bytes(),
    ));
    out.push((HEAVY_ONE, format!("[{one}]").into_bytes()));
    // 4. Small numbers: 2.5 million array slots.
    let data = repeat_within("[", "0", "]", BODY_MAX - 1024);
    out.push((
        "small numbers in event_data",
        format!("[{}]", event_with_data(0, &data)).into_bytes(),
    ));
    // 5. A valid batch of 1000 events with long strings.
    let long = "x".repeat(BODY_MAX / 1000 - 600);
    let events: Vec<Value> = (0..1000)
        .map(|n| {
            let mut e = event("rr-memory-strings", n);
            e["event_data"] = json!({ "text": long });
            e
        })
        .collect();
    out.push((
        "1000 events with long strings",
        serde_json::to_vec(&events).unwrap(),
    ));
    // 6. Deep nesting.
    let depth = BODY_MAX / 2 - 16;
    out.push((
        "deep nesting",
        format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
    ));
    for (name, body) in &out {
        assert!(body.len() <= BODY_MAX, "{name}: {} bytes", body.len());
    }
    out
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn wait_ready(child: &mut Child, client: &reqwest::Client, health: u16) {
    let url = format!("http://127.0.0.1:{health}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(&url).send().await {
            if resp.status() == 200 {
                return;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("datastorage exited early: {status}");
        }
        assert!(Instant::now() < deadline, "datastorage not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_worst_case_bodies_fit_in_256_mib() {
    let dir = tempfile::tempdir().unwrap();
    let (api, health) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .env("DATASTORAGE_SERVER__HOST", "127.0.0.1")
        .env("DATASTORAGE_SERVER__API_PORT", api.to_string())
        .env("DATASTORAGE_SERVER__HEALTH_PORT", health.to_string())
        .env("DATASTORAGE_SERVER__METRICS_PORT", free_port().to_string())
        .env("DATASTORAGE_SERVER__SHUTDOWN_DELAY", "0s")
        .env(
            "DATASTORAGE_STORE__SQLITE__PATH",
            dir.path().join("audit.db"),
        )
        .env("DATASTORAGE_LOG__LEVEL", "warn")
        // This measures memory: an unoptimised build on two shared cores may
        // take longer than the default 30 s to store the heavy valid batches.
        .env("DATASTORAGE_LIMITS__REQUEST_TIMEOUT", "300s")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start datastorage");
    let pid = child.id().unwrap();
    let client = reqwest::Client::new();
    wait_ready(&mut child, &client, health).await;
    let idle_kb = status_kb(pid, "VmHWM:").unwrap();

    // The watcher samples the resident set and kills a runaway child.
    let peak_seen = Arc::new(AtomicU64::new(0));
    let watcher = {
        let peak_seen = peak_seen.clone();
        tokio::spawn(async move {
            while let Some(rss) = status_kb(pid, "VmRSS:") {
                peak_seen.fetch_max(rss * 1024, Ordering::Relaxed);
                if rss * 1024 > RUNAWAY_BYTES {
                    // SAFETY-free: kill(1) by pid, the child is ours.
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let bodies = Arc::new(bodies());
    let url = format!("http://127.0.0.1:{api}/api/v1/audit/events/batch");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS {
        let (bodies, client, url) = (bodies.clone(), client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for round in 0..ROUNDS {
                let (name, body) = &bodies[(client_no + round) % bodies.len()];
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let status = match resp {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let text = resp.text().await.unwrap_or_default();
                        if status >= 400 {
                            let problem: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
                                panic!("{name}: {status} not a problem: {text}")
                            });
                            assert!(problem["type"].is_string(), "{name}: {problem}");
                        }
                        status
                    }
                    // No answer: the server died (or was killed as a runaway).
                    Err(_) => 0,
                };
                answers.push((*name, status));
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let seen = peak_seen.load(Ordering::Relaxed);
    let hwm = status_kb(pid, "VmHWM:").map_or(seen, |kb| kb * 1024);
    watcher.abort();

    let mut summary = std::collections::BTreeMap::<(&str, u16), usize>::new();
    for (name, status) in &answers {
        *summary.entry((*name, *status)).or_default() += 1;
    }
    println!(
        "memory bound: {} bodies from {CLIENTS} clients in {elapsed:.1?}; idle VmHWM {} MiB, \
         peak VmHWM {} MiB (watcher saw {} MiB); answers {summary:?}",
        answers.len(),
        idle_kb / 1024,
        hwm / (1024 * 1024),
        seen / (1024 * 1024),
    );
    assert!(
        seen <= RUNAWAY_BYTES,
        "the child ran away past {} MiB and was killed",
        RUNAWAY_BYTES / (1024 * 1024)
    );
    for (name, status) in summary.keys() {
        // Never a 5xx other than load shedding, never a dropped connection (0).
        assert!(
            matches!(status, 201 | 400 | 413 | 503),
            "{name}: unexpected status {status}"
        );
    }
    assert!(
        answers.iter().any(|(n, s)| *n == HEAVY_ONE && *s == 201),
        "the valid heavy event was never stored: {summary:?}"
    );
    assert!(
        hwm < LIMIT_BYTES,
        "peak resident set {} MiB exceeds the 256 MiB pod limit",
        hwm / (1024 * 1024)
    );

    // Still answers correctly: a small batch stores and reads back.
    let events = common::events("rr-memory-after", 10);
    let resp = client.post(&url).json(&events).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let page: Value = client
        .get(format!(
            "http://127.0.0.1:{api}/api/v1/audit/events?correlation_id=rr-memory-after"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 10);
    child.kill().await.unwrap();
}
