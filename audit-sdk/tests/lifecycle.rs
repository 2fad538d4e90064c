//! The ends of a store's life: `record()` racing `close()`, and the last
//! handle dropped without `close()`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use audit_sdk::{AuditStore, RecordError};
use common::logs::capture;
use common::stub::Stub;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_accepted_while_close_runs_is_delivered() {
    let stub = Stub::start(vec![]).await;
    let mut config = sdk_config(&stub.url());
    config.batch_size = 50;
    let store = AuditStore::new(config).unwrap();
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                for n in 0.. {
                    match store.record(event("corr-race", p * 1_000_000 + n)) {
                        Ok(id) => accepted.push(id),
                        Err(RecordError::Closed { .. }) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                accepted
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = store.close().await;
    let accepted: Vec<_> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    let sent: HashSet<_> = stub.seen().into_iter().flat_map(|s| s.ids).collect();
    let missing = accepted.iter().filter(|id| !sent.contains(id)).count();
    println!("accepted {} events while closing", accepted.len());
    assert_eq!(missing, 0, "record() said Ok for events never delivered");
    assert_eq!(report.delivered, accepted.len() as u64, "{report:?}");
    // Each producer's one refused record is counted as lost ("closed"), nothing else.
    assert_eq!(report.lost, 4, "{report:?}");
}

#[tokio::test]
async fn dropping_every_handle_without_close_warns_and_counts_what_it_abandons() {
    let logs = capture();
    let url = format!("http://127.0.0.1:{}", free_port()); // nothing listens
    let store = AuditStore::new(sdk_config(&url)).unwrap();
    let copy = store.clone();
    for n in 0..17 {
        store.record(event("corr-drop", n)).unwrap();
    }
    drop(store);
    assert!(
        logs.lines("WARN", "without close()").is_empty(),
        "a clone still lives"
    );
    drop(copy);
    let warns = logs.lines("WARN", "without close()");
    assert_eq!(warns.len(), 1, "{warns:#?}");
    assert!(warns[0].contains("abandoned_in_memory=17"), "{}", warns[0]);
}
