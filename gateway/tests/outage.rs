//! DataStorage down while signals arrive: the Gateway answers every webhook on
//! time, and once DataStorage is back every audit event is stored (the SDK's
//! disk spool held them).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    alert, audit_events, free_port, gateway_config, start_datastorage, start_gateway, wait_status,
    webhook,
};
use gateway::remediation::memory::MemoryBackend;

const ALERTS: usize = 1000;
const TARGETS: usize = 250;
/// What "on time" means here: far below AlertManager's 10 s webhook timeout,
/// and below the Gateway's own request timeout.
const ON_TIME: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_is_answered_while_datastorage_is_down_and_audited_after_it_returns() {
    common::install_gateway_metrics();
    let dir = tempfile::tempdir().unwrap();
    let ds_port = free_port();
    let ds_url = format!("http://127.0.0.1:{ds_port}");
    let mut config = gateway_config(&ds_url);
    config.audit.spool_dir = Some(dir.path().join("spool"));
    let backend = Arc::new(MemoryBackend::new(Duration::from_secs(300)));
    let gw = start_gateway(config, backend.clone()).await;
    let readyz = format!("http://{}/readyz", gw.health);
    wait_status(&readyz, 503).await;

    // 1,000 alerts about 250 Deployments, 8 senders at a time.
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for sender in 0..8 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in (sender..ALERTS).step_by(8) {
                let body = webhook(vec![alert(
                    "HighMemory",
                    "payments",
                    &format!("api-{}", i % TARGETS),
                )]);
                let started = Instant::now();
                let resp = gw.post_json("/api/v1/signals/prometheus", &body).await;
                answers.push((resp.status().as_u16(), started.elapsed()));
            }
            answers
        }));
    }
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        for (status, took) in task.await.unwrap() {
            *by_status.entry(status).or_default() += 1;
            slowest = slowest.max(took);
        }
    }
    assert_eq!(by_status.get(&201), Some(&TARGETS), "{by_status:?}");
    assert_eq!(
        by_status.get(&202),
        Some(&(ALERTS - TARGETS)),
        "{by_status:?}"
    );
    assert!(slowest < ON_TIME, "slowest answer took {slowest:?}");
    assert_eq!(backend.requests().len(), TARGETS);
    // The Gateway says it cannot audit right now.
    let resp = reqwest::get(&readyz).await.unwrap();
    assert_eq!(resp.status(), 503);

    // DataStorage comes back on the configured address.
    let ds = start_datastorage(&dir.path().join("audit.db"), ds_port).await;
    gw.audit.flush().await.expect("every event delivered");
    wait_status(&readyz, 200).await;

    let stored = audit_events(&ds.url(), "event_category=gateway").await;
    let mut by_type: HashMap<String, usize> = HashMap::new();
    for e in &stored {
        *by_type
            .entry(e["event_type"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(by_type["gateway.signal.received"], TARGETS);
    assert_eq!(by_type["gateway.crd.created"], TARGETS);
    assert_eq!(by_type["gateway.signal.deduplicated"], ALERTS - TARGETS);
    assert_eq!(stored.len(), 2 * TARGETS + (ALERTS - TARGETS));
    // Every request's trail ends at the right occurrence count.
    for rr in backend.requests() {
        let max = stored
            .iter()
            .filter(|e| e["correlation_id"] == rr.name.as_str())
            .filter_map(|e| e["event_data"]["occurrence_count"].as_u64())
            .max();
        assert_eq!(max, Some(rr.occurrence_count), "{}", rr.name);
    }
    let gw = Arc::try_unwrap(gw).ok().expect("senders finished");
    gw.shutdown().await;
    ds.shutdown().await;
}
