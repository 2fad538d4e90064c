//! DataStorage's metric names; logging and the Prometheus recorder come from
//! `service-kit`, shared with the Gateway.

pub use service_kit::http_metrics::metrics_handle;
pub use service_kit::logging::init_logging;

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
    /// Counter: events refused because their id is stored with other content.
    pub const EVENT_ID_CONFLICTS: &str = "datastorage_event_id_conflicts_total";
    /// Counter: requests refused with 503 because the concurrency limit was reached.
    pub const REQUESTS_SHED: &str = "datastorage_requests_shed_total";
    /// Counter: requests rejected by validation.
    pub const VALIDATION_FAILURES: &str = "datastorage_validation_failures_total";
}

/// The names of DataStorage's request metrics, for the tracking middleware.
pub const HTTP_METRICS: service_kit::http_metrics::HttpMetricNames =
    service_kit::http_metrics::HttpMetricNames {
        requests: names::HTTP_REQUESTS,
        duration: names::HTTP_DURATION,
    };
