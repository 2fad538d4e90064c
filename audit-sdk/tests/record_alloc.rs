//! `record()` builds nothing on the caller's thread: checking a Gateway
//! event's payload, stamping and queueing it allocate nothing per call (the
//! inbox vector's growth is the only allocation, amortised over a burst).
//! Counted with dhat's heap-testing mode, so the figure is exact and does not
//! depend on the machine's load. One test in this file: dhat allows one
//! profiler per process.

use std::time::Duration;

use audit_sdk::payload::{DeduplicationStatus, GatewayEventData};
use audit_sdk::{AuditConfig, AuditEvent, AuditStore};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// What the Gateway records for an alert: strings, label maps and the whole
/// alert as `original_payload`.
fn gateway_event(n: usize) -> AuditEvent {
    let data = GatewayEventData {
        signal_name: Some("HighMemoryUsage".into()),
        fingerprint: Some(format!("{n:064x}")),
        namespace: Some("payments".into()),
        resource_kind: Some("Deployment".into()),
        resource_name: Some(format!("api-{n}")),
        deduplication_status: Some(DeduplicationStatus::New),
        occurrence_count: Some(1),
        signal_labels: Some(
            [("team", "payments"), ("env", "prod")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
        ),
        original_payload: Some(
            serde_json::json!({
                "status": "firing",
                "labels": {"alertname": "HighMemoryUsage", "namespace": "payments"},
                "annotations": {"summary": "memory above 90%"},
                "startsAt": "2026-01-01T00:00:00Z"
            })
            .as_object()
            .unwrap()
            .clone(),
        ),
        ..Default::default()
    };
    AuditEvent::builder("gateway.signal.received", format!("rr-{n}"))
        .category("gateway")
        .action("received")
        .actor("service", "gateway")
        .resource("Deployment", format!("payments/api-{n}"))
        .namespace("payments")
        .severity("critical")
        .data_object(data.to_map())
        .build()
}

#[tokio::test(flavor = "current_thread")]
async fn record_allocates_nothing_per_event_on_the_callers_thread() {
    const EVENTS: usize = 2_000;
    let mut config = AuditConfig::new("http://127.0.0.1:9"); // never reached
    config.buffer_capacity = EVENTS + 1;
    config.shutdown_timeout = Duration::ZERO;
    let store = AuditStore::new(config).unwrap();
    let events: Vec<AuditEvent> = (0..EVENTS).map(gateway_event).collect();
    // The background tasks share this thread but cannot run inside the loop
    // (it never yields), so every allocation counted is `record()`'s own.
    let profiler = dhat::Profiler::builder().testing().build();
    for e in events {
        store.record(e).unwrap();
    }
    let counted = dhat::HeapStats::get().total_blocks;
    drop(profiler);
    println!("{EVENTS} record() calls made {counted} allocations");
    // The inbox doubles as it fills: about log2(EVENTS) allocations in all.
    assert!(
        counted <= 16,
        "{counted} allocations for {EVENTS} record() calls"
    );
    store.close().await;
}
