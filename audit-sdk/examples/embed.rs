//! How a service embeds the audit SDK: its configuration carries an `audit:`
//! section, its `/readyz` is gated on DataStorage, every step records an event,
//! and shutdown closes the store and reports.
//!
//! Run DataStorage (`make run`), then:
//! `cargo run -p audit-sdk --example embed`
//! Optional: `EXAMPLE_AUDIT__DATA_STORAGE_URL=http://host:8080`,
//! `EXAMPLE_AUDIT__SPOOL_DIR=/tmp/audit-spool`.

use std::time::Duration;

use audit_sdk::{AuditConfig, AuditEvent, AuditStore, EventOutcome};
use axum::http::StatusCode;
use axum::routing::get;
use figment::providers::{Env, Serialized};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The service's own configuration, with the SDK's embedded as `audit`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ServiceConfig {
    audit: AuditConfig,
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let config: ServiceConfig = Figment::from(Serialized::defaults(ServiceConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    }))
    .merge(Env::prefixed("EXAMPLE_").split("__"))
    .extract()?;

    // One store per process; clones are cheap handles to the same pipeline.
    let store = AuditStore::new(config.audit)?;

    // Readiness never cascades: not Ready until DataStorage answered once,
    // then serving while events are kept; the reason shows in the body.
    let probe = store.clone();
    let app = axum::Router::new().route(
        "/readyz",
        get(move || {
            let readiness = probe.readiness();
            async move {
                let code = if readiness.is_serving() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (code, format!("{readiness:?}"))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    println!(
        "service /readyz on http://{}/readyz",
        listener.local_addr()?
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Work that is audited: record() never blocks the request path.
    let correlation = format!("rr-example-{}", uuid::Uuid::now_v7().simple());
    for (action, outcome) in [
        ("received", EventOutcome::Success),
        ("created", EventOutcome::Success),
    ] {
        let event = AuditEvent::builder(format!("example.signal.{action}"), &correlation)
            .category("example")
            .action(action)
            .outcome(outcome)
            .actor("service", "example")
            .resource("Deployment", "payments/api")
            .data("note", "recorded by examples/embed.rs")
            .build();
        store.record(event)?;
    }

    // Before answering "done" to a caller who needs the trail, wait for it.
    match store.flush_timeout(Duration::from_secs(5)).await {
        Ok(()) => println!("audit trail {correlation} stored"),
        Err(e) => println!("not confirmed yet: {e}"),
    }
    let report = store.close().await;
    println!(
        "closed: delivered {}, spooled {}, lost {}, rejected {}",
        report.delivered, report.spooled, report.lost, report.rejected
    );
    Ok(())
}
