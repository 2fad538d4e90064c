//! `audit-sdk-test-child`: a process embedding the SDK, for the SIGKILL tests
//! (`tests/chaos.rs`, `tests/spool.rs`); cargo builds it for the integration
//! tests (`CARGO_BIN_EXE_audit-sdk-test-child`). Not a usage example.
//!
//! Environment: `CHILD_URL` (DataStorage), `CHILD_SPOOL` (spool_dir),
//! `CHILD_MODE`:
//! - `durable`: 8 tasks call `record_durable` in a loop and print
//!   `DURABLE <id>` after each returns, until killed;
//! - `sync`: records `CHILD_COUNT` events, printing `RECORDED <id>`, calls
//!   `sync()`, prints `SYNCED` and waits to be killed.

use std::time::Duration;

use audit_sdk::{AuditConfig, AuditEvent, AuditStore};

fn event(n: usize) -> AuditEvent {
    AuditEvent::builder("gateway.signal.received", "corr-child")
        .category("gateway")
        .action("received")
        .actor("service", "gateway")
        .resource("Deployment", format!("payments/api-{n}"))
        .data("n", n)
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = AuditConfig::new(std::env::var("CHILD_URL")?);
    config.spool_dir = Some(std::env::var("CHILD_SPOOL")?.into());
    config.batch_size = 100;
    config.flush_interval = Duration::from_millis(20);
    config.retry_min_delay = Duration::from_millis(20);
    config.retry_max_delay = Duration::from_millis(200);
    config.probe_interval = Duration::from_millis(200);
    let store = AuditStore::new(config)?;
    match std::env::var("CHILD_MODE")?.as_str() {
        "durable" => {
            let mut tasks = Vec::new();
            for t in 0..8 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for n in 0.. {
                        match store.record_durable(event(t * 10_000_000 + n)).await {
                            Ok(id) => println!("DURABLE {id}"),
                            Err(e) => eprintln!("not durable: {e}"),
                        }
                    }
                }));
            }
            for t in tasks {
                t.await?;
            }
        }
        "sync" => {
            let count: usize = std::env::var("CHILD_COUNT")?.parse()?;
            for n in 0..count {
                println!("RECORDED {}", store.record(event(n))?);
            }
            store.sync().await?;
            println!("SYNCED");
            std::future::pending::<()>().await;
        }
        other => return Err(format!("unknown CHILD_MODE {other}").into()),
    }
    Ok(())
}
