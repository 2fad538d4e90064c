//! Logs (tracing-subscriber) and metrics (the `metrics` facade with a Prometheus
//! recorder), set up once per process.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Metric names, defined once for the code that records them and the tests.
pub mod names {
    /// Counter: signals accepted for processing, by `source`.
    pub const SIGNALS_RECEIVED: &str = "gateway_signals_received_total";
    /// Counter: RemediationRequests created, by `source`.
    pub const REQUESTS_CREATED: &str = "gateway_remediation_requests_created_total";
    /// Counter: signals absorbed by an active RemediationRequest, by `source`.
    pub const SIGNALS_DEDUPLICATED: &str = "gateway_signals_deduplicated_total";
    /// Counter: inputs refused (malformed, stale, not a signal…), by `source` and `reason`.
    pub const SIGNALS_REJECTED: &str = "gateway_signals_rejected_total";
    /// Counter: signals the backend could not handle, by `source` and `reason`.
    pub const SIGNALS_FAILED: &str = "gateway_signals_failed_total";
    /// Counter: audit events the SDK refused to record, by `event_type`.
    pub const AUDIT_FAILURES: &str = "gateway_audit_record_failures_total";
    /// Counter: HTTP requests by `route`, `method` and `status`.
    pub const HTTP_REQUESTS: &str = "gateway_http_requests_total";
    /// Histogram: HTTP request duration by `route` template (seconds).
    pub const HTTP_DURATION: &str = "gateway_http_request_duration_seconds";
}

/// Installs the global tracing subscriber. `RUST_LOG`, when set, wins over the
/// configured level. Safe to call more than once (later calls do nothing).
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // Already initialised (tests start several apps in one process): keep the first.
    drop(result);
}

/// The process-wide Prometheus recorder, installed on first use.
///
/// A process has one global recorder; tests that start several applications in
/// one process share it, which is why this is a `OnceLock` and not per app.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            handle
        })
        .clone()
}
