//! The disk spool: events outlive the process that recorded them.

mod common;

use std::time::Duration;

use audit_sdk::AuditStore;
use common::*;

/// Paused time: the "several retry rounds" are many probe and delivery
/// attempts in virtual time, not a real sleep; logs are captured from every
/// thread (the spool writes run on blocking threads).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unresolvable_host_spools_with_one_actionable_error_then_delivers_after_fixing_the_url()
{
    let logs = common::logs::capture();

    let spool = tempfile::tempdir().unwrap();
    let wrong = "http://datastorage.kubernaut-system.svc.invalid:8080";
    let mut config = sdk_config(wrong);
    config.spool_dir = Some(spool.path().to_owned());
    config.shutdown_timeout = Duration::from_secs(1);
    let store = AuditStore::new(config.clone()).unwrap();
    let ids: Vec<_> = (0..200)
        .map(|n| store.record(event("corr-dns", n)).unwrap())
        .collect();
    // Let the probe and delivery fail for a while (several retry rounds). The
    // resolver runs on blocking threads, which hold back tokio's auto-advance,
    // so virtual time here runs at about the pace of the lookups.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = store.close().await;
    assert_eq!(
        (report.spooled, report.lost, report.delivered),
        (200, 0, 0),
        "{report:?}"
    );

    // Every ERROR about this store names its URL; other tests of this binary
    // run in parallel with their own.
    let errors = logs.lines("ERROR", "svc.invalid");
    assert_eq!(errors.len(), 1, "exactly one ERROR expected:\n{errors:#?}");
    assert!(
        errors[0].contains("datastorage.kubernaut-system.svc.invalid"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("Service named \"datastorage\" in namespace \"kubernaut-system\""),
        "{}",
        errors[0]
    );

    // Real sockets from here on: real time.
    tokio::time::resume();
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("audit.db"), 0).await;
    config.data_storage_url = server.url();
    let fixed = AuditStore::new(config).unwrap();
    fixed.flush_timeout(Duration::from_secs(30)).await.unwrap();
    assert_stored_exactly(&server.url(), "corr-dns", &ids).await;
    let report = fixed.close().await;
    assert_eq!((report.spooled, report.delivered), (0, 200));
    server.shutdown().await;
}

#[tokio::test]
async fn a_poison_event_is_set_aside_and_its_neighbours_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("audit.db"), 0).await;
    let spool = tempfile::tempdir().unwrap();
    let mut config = sdk_config(&server.url());
    config.spool_dir = Some(spool.path().to_owned());
    config.batch_size = 100;
    let store = AuditStore::new(config).unwrap();
    let mut good = Vec::new();
    let mut poison_id = None;
    for n in 0..100 {
        if n == 37 {
            let mut bad = event("corr-poison", n);
            bad.retention_days = 0; // the server refuses it; client validation is bypassed
            poison_id = Some(store.record_unvalidated(bad).unwrap());
        } else {
            good.push(store.record(event("corr-poison", n)).unwrap());
        }
    }
    assert_eq!(
        store.flush_timeout(Duration::from_secs(30)).await,
        Err(audit_sdk::FlushError::Rejected { count: 1 }),
        "a set-aside event is not a delivered one"
    );
    assert_stored_exactly(&server.url(), "corr-poison", &good).await;
    let report = store.close().await;
    assert_eq!((report.delivered, report.rejected, report.lost), (99, 1, 0));
    let rejected =
        std::fs::read_to_string(spool.path().join(audit_sdk::spool::REJECTED_FILE)).unwrap();
    assert_eq!(rejected.lines().count(), 1);
    let line: serde_json::Value = serde_json::from_str(rejected.lines().next().unwrap()).unwrap();
    assert_eq!(line["event"]["event_id"], poison_id.unwrap().to_string());
    assert_eq!(line["status"], 400);
    assert!(
        line["reason"].as_str().unwrap().contains("retention_days"),
        "{line}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn events_spooled_by_a_process_killed_with_sigkill_are_delivered_by_the_next() {
    use tokio::io::AsyncBufReadExt;

    let spool = tempfile::tempdir().unwrap();
    let count = 500;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit-sdk-test-child"))
        .env("CHILD_MODE", "sync")
        .env("CHILD_URL", "http://127.0.0.1:9") // nothing listens there
        .env("CHILD_SPOOL", spool.path())
        .env("CHILD_COUNT", count.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ids = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("child output")
            .unwrap()
            .expect("child exited early");
        if let Some(id) = line.strip_prefix("RECORDED ") {
            ids.push(uuid::Uuid::parse_str(id).unwrap());
        } else if line == "SYNCED" {
            break;
        }
    }
    assert_eq!(ids.len(), count);
    child.kill().await.unwrap(); // SIGKILL: no close(), no flush

    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("audit.db"), 0).await;
    let mut config = sdk_config(&server.url());
    config.spool_dir = Some(spool.path().to_owned());
    let store = AuditStore::new(config).unwrap();
    store.flush_timeout(Duration::from_secs(30)).await.unwrap();
    assert_stored_exactly(&server.url(), "corr-child", &ids).await;
    let report = store.close().await;
    assert_eq!(
        (report.delivered, report.spooled, report.lost),
        (count as u64, 0, 0)
    );
    server.shutdown().await;
}
