//! The Gateway's metric names; logging and the Prometheus recorder come from
//! `service-kit`, shared with DataStorage.

pub use service_kit::http_metrics::metrics_handle;
pub use service_kit::logging::init_logging;

/// Metric names, defined once for the code that records them and the tests.
pub mod names {
    /// Counter: signals accepted for processing, by `source`.
    pub const SIGNALS_RECEIVED: &str = "gateway_signals_received_total";
    /// Counter: RemediationRequests created, by `source`.
    pub const REQUESTS_CREATED: &str = "gateway_remediation_requests_created_total";
    /// Counter: signals absorbed by an active RemediationRequest, by `source`.
    pub const SIGNALS_DEDUPLICATED: &str = "gateway_signals_deduplicated_total";
    /// Counter: resolved alerts recorded on an active RemediationRequest, by `source`.
    pub const SIGNALS_RESOLVED: &str = "gateway_signals_resolved_total";
    /// Counter: resolved alerts with no active RemediationRequest (answered `ignored`), by `source`.
    pub const SIGNALS_IGNORED: &str = "gateway_signals_ignored_total";
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

/// The names of the Gateway's request metrics, for the tracking middleware.
pub const HTTP_METRICS: service_kit::http_metrics::HttpMetricNames =
    service_kit::http_metrics::HttpMetricNames {
        requests: names::HTTP_REQUESTS,
        duration: names::HTTP_DURATION,
    };
