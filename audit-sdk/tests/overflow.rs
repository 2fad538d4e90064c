//! The one way events are lost: the configured memory bound overflows. Each
//! loss is an error to the caller and a count in the metric.

mod common;

use audit_sdk::{AuditStore, RecordError};
use common::*;
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::test]
async fn past_the_memory_bound_record_fails_and_every_drop_is_counted() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let mut config = sdk_config(&format!("http://127.0.0.1:{}", free_port())); // down
    config.buffer_capacity = 100;
    let store = AuditStore::new(config).unwrap();
    let mut errors = 0;
    for n in 0..250 {
        match store.record(event("corr-overflow", n)) {
            Ok(_) => {}
            Err(RecordError::Overflow { capacity, .. }) => {
                assert_eq!(capacity, 100);
                errors += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(errors, 150);
    assert_eq!(store.lost(), 150);
    let text = handle.render();
    let line = text
        .lines()
        .find(|l| l.starts_with("audit_sdk_events_dropped_total{reason=\"buffer_full\"}"))
        .unwrap_or_else(|| panic!("no drop counter in:\n{text}"));
    assert!(line.ends_with(" 150"), "{line}");
}
