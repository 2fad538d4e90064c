//! Metric names of the SDK, recorded through the `metrics` facade (the host
//! service chooses the exporter).

/// Counter: events accepted by `record()` (added once per burst, when the
/// intake takes them, so `record()` itself never looks a metric up).
pub const RECORDED: &str = "audit_sdk_events_recorded_total";
/// Counter: events acknowledged by DataStorage.
pub const DELIVERED: &str = "audit_sdk_events_delivered_total";
/// Counter: delivery attempts that failed transiently and were retried.
pub const RETRIED_BATCHES: &str = "audit_sdk_batches_retried_total";
/// Counter: events lost, by `reason` (`buffer_full`, `closed`, `shutdown`, `spool_damaged`, `dropped_without_close`).
pub const DROPPED: &str = "audit_sdk_events_dropped_total";
/// Counter: events permanently refused by DataStorage and set aside.
pub const REJECTED: &str = "audit_sdk_events_rejected_total";
/// Counter: events DataStorage already held when their batch was sent for the
/// first time (a reused event id: a cloned builder, a replayed request).
pub const DUPLICATE_IDS: &str = "audit_sdk_events_duplicate_on_first_send_total";
/// Counter: delivery attempts answered with a refusal that is not about the
/// events (wrong path or port, proxy, mesh), by `status`.
pub const MISROUTED: &str = "audit_sdk_batches_misrouted_total";
/// Counter: handles dropped without `close()`, and the events they abandoned
/// in memory are counted in [`DROPPED`] with reason `dropped_without_close`.
pub const DROPPED_WITHOUT_CLOSE: &str = "audit_sdk_stores_dropped_without_close_total";
/// Gauge: the store's [`crate::Readiness`] (2 ready, 1 degraded, 0 down).
pub const READINESS: &str = "audit_sdk_readiness";
/// Gauge: events held in memory.
pub const QUEUE_DEPTH: &str = "audit_sdk_queue_depth";
/// Gauge: bytes of spool segments on disk.
pub const SPOOL_BYTES: &str = "audit_sdk_spool_bytes";
/// Histogram: seconds from the start of a batch's first attempt to its acknowledgement.
pub const DELIVERY_LATENCY: &str = "audit_sdk_delivery_latency_seconds";

/// Counts `n` lost events with `reason` and says so in the log.
pub(crate) fn dropped(reason: &'static str, n: u64) {
    metrics::counter!(DROPPED, "reason" => reason).increment(n);
}
