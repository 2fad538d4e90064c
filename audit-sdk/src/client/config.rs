//! The SDK's configuration: a serde struct with defaults, so a service embeds it
//! in its own figment configuration (`audit: {...}`) and gets validation of
//! unknown keys for free.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where Kubernetes projects a Pod's ServiceAccount token; used as the default
/// token file when it exists.
pub const SERVICE_ACCOUNT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How the SDK talks to DataStorage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// JSON over HTTP to the batch endpoint.
    #[default]
    Http,
    /// `audit.v1.AuditIngest/StoreBatch` over HTTP/2 on the same port.
    Grpc,
}

/// When spool writes are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// After every write (group-committed: one fsync per burst of records).
    Always,
    /// At most every `spool_fsync_interval`.
    #[default]
    Interval,
    /// Left to the operating system (survives a process crash, not a power loss).
    Never,
}

/// Everything the SDK can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Base URL of DataStorage, e.g.
    /// `http://data-storage-service.kubernaut-system.svc.cluster.local:8080`.
    pub data_storage_url: String,
    /// `http` or `grpc`.
    pub transport: TransportKind,
    /// Events per delivery batch.
    pub batch_size: usize,
    /// Batches sent concurrently. Two keep DataStorage busy parsing one batch
    /// while it stores the other; acknowledgements still happen in order.
    pub max_in_flight: usize,
    /// Longest time an event waits for its batch to fill.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Most events held in memory (waiting to be spooled or delivered). Past it,
    /// `record()` returns an overflow error: the one way events can be lost, and
    /// never silently.
    pub buffer_capacity: usize,
    /// Directory of the durable spool; `None` keeps events in memory only.
    pub spool_dir: Option<PathBuf>,
    /// Largest total size of spool segments.
    pub spool_max_bytes: u64,
    /// Size at which a spool segment is closed and a new one started.
    pub spool_segment_bytes: u64,
    /// When spool writes are fsynced.
    pub spool_fsync: FsyncPolicy,
    /// Fsync period for `spool_fsync: interval`.
    #[serde(with = "humantime_serde")]
    pub spool_fsync_interval: Duration,
    /// Whether the embedding service answers its callers only after their
    /// audit events are durable ([`crate::AuditStore::record_durable`] /
    /// [`crate::AuditStore::sync`]). Unset: on when `spool_dir` is set. The
    /// Gateway honours it; see [`AuditConfig::durable_ack_enabled`].
    pub durable_ack: Option<bool>,
    /// Longest wait of a durable acknowledgement in the embedding service
    /// (the Gateway's signal answer): past it the service answers 503 with
    /// Retry-After instead of a 2xx without a durable audit trail. Below
    /// Alertmanager's 10 s webhook timeout, so the sender sees the 503.
    #[serde(with = "humantime_serde")]
    pub durable_ack_timeout: Duration,
    /// Bearer token file; default: the projected ServiceAccount token when present.
    pub token_file: Option<PathBuf>,
    /// How often the token file is re-read (it is also re-read after a 401).
    #[serde(with = "humantime_serde")]
    pub token_refresh_interval: Duration,
    /// PEM file of the CA that signs DataStorage's certificate (https URLs).
    pub ca_file: Option<PathBuf>,
    /// Timeout of one delivery request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_min_delay: Duration,
    /// Longest retry delay (exponential backoff with jitter in between).
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// How long `flush()` waits for acknowledgement before reporting what is pending.
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// How long `close()` keeps delivering before it reports what is left.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How often reachability of DataStorage is re-probed for [`crate::AuditStore::is_ready`].
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Kubernetes namespace DataStorage is expected in, for actionable error
    /// messages when its name does not resolve.
    pub expected_namespace: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            data_storage_url: "http://localhost:8080".into(),
            transport: TransportKind::Http,
            batch_size: 500,
            max_in_flight: 2,
            flush_interval: Duration::from_secs(1),
            buffer_capacity: 100_000,
            spool_dir: None,
            spool_max_bytes: 512 * 1024 * 1024,
            spool_segment_bytes: 16 * 1024 * 1024,
            spool_fsync: FsyncPolicy::Interval,
            spool_fsync_interval: Duration::from_secs(1),
            durable_ack: None,
            durable_ack_timeout: Duration::from_secs(5),
            token_file: None,
            token_refresh_interval: Duration::from_secs(60),
            ca_file: None,
            request_timeout: Duration::from_secs(10),
            retry_min_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            probe_interval: Duration::from_secs(5),
            expected_namespace: None,
        }
    }
}

impl AuditConfig {
    /// A default configuration pointed at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            data_storage_url: url.into(),
            ..Self::default()
        }
    }

    /// The token file in effect: the configured one, else the projected
    /// ServiceAccount token when this process runs in a Pod.
    pub fn effective_token_file(&self) -> Option<PathBuf> {
        self.token_file.clone().or_else(|| {
            let sa = PathBuf::from(SERVICE_ACCOUNT_TOKEN_PATH);
            sa.exists().then_some(sa)
        })
    }

    /// `durable_ack` in effect: as configured, else on exactly when a spool is.
    pub fn durable_ack_enabled(&self) -> bool {
        self.durable_ack.unwrap_or(self.spool_dir.is_some())
    }

    /// Checks values that serde cannot.
    pub fn check(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.data_storage_url).map_err(|e| {
            format!(
                "data_storage_url {:?} is not a URL: {e}",
                self.data_storage_url
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "data_storage_url {:?} must be an http:// or https:// URL with a host",
                self.data_storage_url
            ));
        }
        if self.batch_size == 0 || self.buffer_capacity == 0 || self.max_in_flight == 0 {
            return Err("batch_size, max_in_flight and buffer_capacity must be at least 1".into());
        }
        // One segment being written and one being delivered must fit at once,
        // or a full spool can never free space (the old equal-sizes deadlock).
        if self.spool_dir.is_some()
            && self.spool_segment_bytes.saturating_mul(2) > self.spool_max_bytes
        {
            return Err(format!(
                "spool_max_bytes ({}) must be at least 2 x spool_segment_bytes ({})",
                self.spool_max_bytes, self.spool_segment_bytes
            ));
        }
        if self.durable_ack_timeout.is_zero() {
            return Err("durable_ack_timeout must be greater than zero".into());
        }
        if self.durable_ack == Some(true) && self.spool_dir.is_none() {
            return Err(
                "durable_ack needs a spool_dir (events are made durable in the spool)".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_smaller_than_two_segments_is_refused() {
        let mut c = AuditConfig::new("http://ds:8080");
        c.spool_dir = Some("/tmp/x".into());
        c.spool_max_bytes = 1000;
        c.spool_segment_bytes = 1000;
        assert!(c.check().unwrap_err().contains("2 x spool_segment_bytes"));
        c.spool_segment_bytes = 500;
        assert!(c.check().is_ok());
    }

    #[test]
    fn durable_ack_defaults_to_on_exactly_with_a_spool() {
        let mut c = AuditConfig::new("http://ds:8080");
        assert!(!c.durable_ack_enabled());
        c.spool_dir = Some("/tmp/x".into());
        assert!(c.durable_ack_enabled());
        c.durable_ack = Some(false);
        assert!(!c.durable_ack_enabled());
        c.spool_dir = None;
        c.durable_ack = Some(true);
        assert!(c
            .check()
            .unwrap_err()
            .contains("durable_ack needs a spool_dir"));
    }
}
