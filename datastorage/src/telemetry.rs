//! Logs (tracing-subscriber) and metrics (the `metrics` facade with a Prometheus
//! recorder), set up once per process.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Metric names, defined once for the code that records them and the tests.
pub mod names {
    /// Counter: HTTP requests by `route`, `method` and `status`.
    pub const HTTP_REQUESTS: &str = "datastorage_http_requests_total";
    /// Histogram: HTTP request duration by `route` (seconds).
    pub const HTTP_DURATION: &str = "datastorage_http_request_duration_seconds";
    /// Histogram: time to store one batch (seconds).
    pub const WRITE_DURATION: &str = "datastorage_write_duration_seconds";
    /// Counter: events stored.
    pub const EVENTS_STORED: &str = "datastorage_events_stored_total";
    /// Counter: events not stored again because their id was already stored.
    pub const EVENTS_DUPLICATE: &str = "datastorage_events_duplicate_total";
    /// Counter: requests rejected by validation.
    pub const VALIDATION_FAILURES: &str = "datastorage_validation_failures_total";
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
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
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
