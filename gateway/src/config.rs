//! Typed configuration, layered: defaults → YAML file → `GATEWAY_*` environment.
//!
//! Every struct denies unknown keys, so a typo in a ConfigMap stops the Gateway at
//! startup with the key's name instead of being silently ignored. The audit
//! SDK's own configuration is embedded as `audit:`; its `data_storage_url`
//! defaults to DataStorage's in-cluster URL, built from the same constants as
//! the manifests ([`audit_sdk::names`]).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use audit_sdk::AuditConfig;
use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use humantime_serde::re::humantime::format_duration;
use serde::{Deserialize, Serialize};

/// Prefix of environment overrides (`GATEWAY_SERVER__API_PORT=8180`).
pub const ENV_PREFIX: &str = "GATEWAY_";
pub use audit_sdk::names::{
    API_PORT as DEFAULT_API_PORT, HEALTH_PORT as DEFAULT_HEALTH_PORT,
    METRICS_PORT as DEFAULT_METRICS_PORT,
};

/// Largest signal body accepted (AlertManager and Kubernetes events alike).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// Alertmanager's shortest deadline for one webhook notification: its
/// `notify.MinTimeout`. Alertmanager 0.25 has no webhook or `http_config`
/// request timeout; every notification runs under one context of
/// `max(group_interval, 10s)` (plus the HA peer wait), retries included, so
/// 10 s is the least time a sender may give the Gateway. A request still
/// running past it is abandoned by its sender, and the sender's next try
/// (its next flush, or an HA peer) races the work the Gateway still does.
pub const ALERTMANAGER_NOTIFY_DEADLINE: Duration = Duration::from_secs(10);

/// The whole configuration of a Gateway process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners, timeouts and shutdown timing.
    pub server: ServerConfig,
    /// Limits on incoming signals.
    pub limits: LimitsConfig,
    /// How alerts name their target and their cluster.
    pub signals: SignalsConfig,
    /// Name of this cluster; when set it prefixes every fingerprint
    /// (`cluster:namespace:Kind:name`), so two clusters never deduplicate
    /// together. An alert's own `signals.cluster_label` wins over it.
    pub cluster: Option<String>,
    /// Where RemediationRequests live.
    pub remediation: RemediationConfig,
    /// The audit SDK (`audit.data_storage_url` names DataStorage).
    pub audit: AuditConfig,
    /// Logging.
    pub log: LogConfig,
    /// Who may post signals (verb `create` on `gateway-service`; see the `auth` crate).
    pub auth: auth::AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            limits: LimitsConfig::default(),
            signals: SignalsConfig::default(),
            cluster: None,
            remediation: RemediationConfig::default(),
            audit: AuditConfig::new(audit_sdk::names::data_storage_url()),
            log: LogConfig::default(),
            auth: auth::AuthConfig::default(),
        }
    }
}

/// Listeners, timeouts and shutdown timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address every listener binds.
    pub host: IpAddr,
    /// Signal API port (0 = any free port).
    pub api_port: u16,
    /// Health port (0 = any free port).
    pub health_port: u16,
    /// Prometheus metrics port (0 = any free port).
    pub metrics_port: u16,
    /// Longest time one signal request may take; past it the answer is 504.
    /// Below [`ALERTMANAGER_NOTIFY_DEADLINE`] (checked), so Alertmanager
    /// always sees the answer and its retry comes after it.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// After a stop signal, how long `/readyz` answers 503 before listeners stop
    /// accepting, so Endpoints stop sending traffic first.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take to finish after that.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// TLS on the API port (`cert_file` and `key_file`; re-read as they rotate).
    #[serde(default)]
    pub tls: service_kit::tls::TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            api_port: DEFAULT_API_PORT,
            health_port: DEFAULT_HEALTH_PORT,
            metrics_port: DEFAULT_METRICS_PORT,
            // 2 s below Alertmanager's 10 s deadline; above the audit
            // `durable_ack_timeout` (5 s), so an unconfirmed audit trail is
            // answered 503 + Retry-After, not 504.
            request_timeout: Duration::from_secs(8),
            shutdown_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(20),
            tls: service_kit::tls::TlsConfig::default(),
        }
    }
}

/// Limits on incoming signals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// A signal older than this is refused as stale (400 `stale-signal`): by its
    /// `X-Timestamp` header, and for a Kubernetes Event by the newest of its
    /// `lastTimestamp`, `eventTime` and `series.lastObservedTime`.
    #[serde(with = "humantime_serde")]
    pub max_signal_age: Duration,
    /// A signal dated further ahead than this is refused (the sender's clock is off).
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_signal_age: Duration::from_secs(5 * 60),
            max_clock_skew: Duration::from_secs(2 * 60),
        }
    }
}

/// One row of the label → Kind table: an alert carrying `label` is about the
/// `kind` object of that name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetLabel {
    /// The alert label holding the object's name.
    pub label: String,
    /// The Kubernetes Kind it names.
    pub kind: String,
    /// Cluster-scoped kinds (`Node`) need no namespace.
    #[serde(default)]
    pub cluster_scoped: bool,
    /// When not empty, the row applies only to alerts whose `job` label is one
    /// of these (`instance` names a Node only for node-exporter's scrape).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
}

impl TargetLabel {
    fn namespaced(label: &str, kind: &str) -> Self {
        Self {
            label: label.to_owned(),
            kind: kind.to_owned(),
            cluster_scoped: false,
            jobs: Vec::new(),
        }
    }

    fn cluster_scoped(label: &str, kind: &str, jobs: &[&str]) -> Self {
        Self {
            label: label.to_owned(),
            kind: kind.to_owned(),
            cluster_scoped: true,
            jobs: jobs.iter().map(|j| (*j).to_owned()).collect(),
        }
    }
}

/// How alerts name their target and their cluster.
///
/// The defaults follow kube-state-metrics and kube-prometheus: the scrape's own
/// identity labels (`job`, `instance`, `service`, `endpoint`, `container`,
/// `prometheus`, `prometheus_replica`, `exported_job`, …) are not in the table,
/// so they never name a target; a site with its own relabelling replaces the
/// table in its configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalsConfig {
    /// Label → Kind rows, the first row that applies (its `jobs`) and whose
    /// label the alert carries wins: workloads before Pods, so every Pod of a
    /// Deployment deduplicates together.
    pub target_labels: Vec<TargetLabel>,
    /// Labels holding the target's namespace, first present wins
    /// (`exported_namespace` is the target's own when `honor_labels: false`
    /// renamed it away from the scrape's `namespace`).
    pub namespace_labels: Vec<String>,
    /// Alert label naming the cluster the alert is about (fleet Prometheus,
    /// Thanos); when absent, the configuration's `cluster`.
    pub cluster_label: String,
}

impl Default for SignalsConfig {
    fn default() -> Self {
        let ns = TargetLabel::namespaced;
        Self {
            target_labels: vec![
                // node-exporter describes its host: kube-prometheus relabels its
                // `instance` to the node name, and the scrape's `pod` is the
                // exporter's own, so this row comes before the workloads.
                TargetLabel::cluster_scoped("instance", "Node", &["node-exporter"]),
                ns("deployment", "Deployment"),
                ns("statefulset", "StatefulSet"),
                ns("daemonset", "DaemonSet"),
                ns("cronjob", "CronJob"),
                // kube-state-metrics names a Job `job_name`: `job` is the scrape's.
                ns("job_name", "Job"),
                ns("replicaset", "ReplicaSet"),
                ns("horizontalpodautoscaler", "HorizontalPodAutoscaler"),
                // With `honor_labels: false` the scrape's `pod` is the exporter's
                // own Pod and the target's arrives as `exported_pod`.
                ns("exported_pod", "Pod"),
                ns("pod", "Pod"),
                ns("persistentvolumeclaim", "PersistentVolumeClaim"),
                TargetLabel::cluster_scoped("node", "Node", &[]),
            ],
            namespace_labels: vec!["exported_namespace".to_owned(), "namespace".to_owned()],
            cluster_label: "cluster".to_owned(),
        }
    }
}

impl SignalsConfig {
    /// Refuses a table that could never name a target, naming the bad row.
    pub fn check(&self) -> Result<(), String> {
        if self.target_labels.is_empty() {
            return Err("signals.target_labels is empty: no alert could name a target".into());
        }
        for (i, row) in self.target_labels.iter().enumerate() {
            if row.label.trim().is_empty() || row.kind.trim().is_empty() {
                return Err(format!(
                    "signals.target_labels[{i}] needs a non-empty label and kind"
                ));
            }
        }
        if self.namespace_labels.iter().any(|l| l.trim().is_empty()) {
            return Err("signals.namespace_labels holds an empty label".into());
        }
        Ok(())
    }
}

/// Which RemediationRequest backend serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// `kubernetes` when running in a Pod, `memory` otherwise.
    #[default]
    Auto,
    /// RemediationRequest custom resources through the Kubernetes API.
    Kubernetes,
    /// In process, for running without a cluster.
    Memory,
}

/// Where RemediationRequests live.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationConfig {
    /// `kubernetes`, `memory` or `auto`.
    pub backend: BackendKind,
    /// Settings of the in-memory backend.
    pub memory: MemoryConfig,
    /// Settings of the Kubernetes backend.
    pub kubernetes: KubernetesConfig,
}

/// Settings of the in-memory backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// How long a RemediationRequest stays active (absorbing duplicates) after
    /// it was created; it stands in for the remediation finishing.
    #[serde(with = "humantime_serde")]
    pub active_for: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            active_for: Duration::from_secs(5 * 60),
        }
    }
}

/// Settings of the Kubernetes backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Namespace RemediationRequests are created in.
    pub namespace: String,
    /// How many times a status update is retried after a 409 conflict.
    pub conflict_retries: u32,
    /// Deadline of one Kubernetes API call (connect, send, answer).
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Retries of one API call refused as transient (429/503, timeouts),
    /// with jittered exponential backoff; the whole call, retries included,
    /// ends within `call_timeout × (call_retries + 1)` plus the backoff (≤ 1 s).
    pub call_retries: u32,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            namespace: audit_sdk::names::NAMESPACE.to_owned(),
            conflict_retries: 5,
            call_timeout: Duration::from_secs(2),
            call_retries: 2,
        }
    }
}

pub use service_kit::logging::{LogConfig, LogFormat};

impl Config {
    /// Loads defaults, then `file` (when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let config: Self = Self::figment(file).extract().map_err(Box::new)?;
        config
            .check()
            .map_err(|e| Box::new(figment::Error::from(e)))?;
        Ok(config)
    }

    /// Refuses settings that contradict each other, naming the keys: a
    /// request deadline Alertmanager does not wait for, or a durable
    /// acknowledgement wait the request deadline cuts short (a 504 that
    /// leaves the work running instead of the 503 + Retry-After that says
    /// the audit trail is not durable).
    pub fn check(&self) -> Result<(), String> {
        self.signals.check()?;
        self.audit.check().map_err(|e| format!("audit: {e}"))?;
        let request = self.server.request_timeout;
        if request.is_zero() {
            return Err("server.request_timeout must be greater than zero".into());
        }
        if request >= ALERTMANAGER_NOTIFY_DEADLINE {
            return Err(format!(
                "server.request_timeout ({}) must be below Alertmanager's shortest notification deadline ({}): \
                 past it Alertmanager abandons a request the Gateway is still processing, and its next try races that work",
                format_duration(request),
                format_duration(ALERTMANAGER_NOTIFY_DEADLINE),
            ));
        }
        if self.audit.durable_ack_enabled() && self.audit.durable_ack_timeout >= request {
            return Err(format!(
                "audit.durable_ack_timeout ({}) must be below server.request_timeout ({}): \
                 a signal whose audit events are not durable in time must be answered 503 + Retry-After before the request times out (504)",
                format_duration(self.audit.durable_ack_timeout),
                format_duration(request),
            ));
        }
        Ok(())
    }

    /// The layered sources.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            // `file_exact` makes a missing file an error instead of an empty layer.
            figment = figment.merge(Yaml::file_exact(path));
        }
        figment.merge(Env::prefixed(ENV_PREFIX).split("__"))
    }
}

#[cfg(test)]
// figment's Jail API fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_the_shared_ports_and_the_in_cluster_data_storage_url() {
        figment::Jail::expect_with(|_| {
            let c = Config::load(None).unwrap();
            assert_eq!(c.server.api_port, audit_sdk::names::API_PORT);
            assert_eq!(c.server.health_port, audit_sdk::names::HEALTH_PORT);
            assert_eq!(c.server.metrics_port, audit_sdk::names::METRICS_PORT);
            assert_eq!(
                c.audit.data_storage_url,
                audit_sdk::names::data_storage_url()
            );
            assert_eq!(c.limits.max_body_bytes, 256 * 1024);
            assert_eq!(c.remediation.backend, BackendKind::Auto);
            assert_eq!(c.remediation.memory.active_for, Duration::from_secs(300));
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "g.yaml",
                "server:\n  api_port: 8180\nremediation:\n  backend: memory\naudit:\n  data_storage_url: http://localhost:8080\n",
            )?;
            jail.set_env("GATEWAY_SERVER__API_PORT", "8280");
            jail.set_env("GATEWAY_AUDIT__DATA_STORAGE_URL", "http://127.0.0.1:9999");
            let c = Config::load(Some(Path::new("g.yaml"))).unwrap();
            assert_eq!(c.server.api_port, 8280);
            assert_eq!(c.remediation.backend, BackendKind::Memory);
            assert_eq!(c.audit.data_storage_url, "http://127.0.0.1:9999");
            Ok(())
        });
    }

    #[test]
    fn an_empty_or_blank_target_table_is_refused_at_load() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("g.yaml", "signals:\n  target_labels: []\n")?;
            let err = Config::load(Some(Path::new("g.yaml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("signals.target_labels"), "{err}");
            jail.create_file(
                "h.yaml",
                "signals:\n  target_labels: [{label: pod, kind: ''}]\n",
            )?;
            let err = Config::load(Some(Path::new("h.yaml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("target_labels[0]"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_default_deadlines_end_before_alertmanager_gives_up_and_in_order() {
        let c = Config::default();
        assert!(c.server.request_timeout < ALERTMANAGER_NOTIFY_DEADLINE);
        assert!(c.audit.durable_ack_timeout < c.server.request_timeout);
        c.check().unwrap();
    }

    #[test]
    fn a_request_timeout_alertmanager_does_not_wait_for_is_refused_at_load() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GATEWAY_SERVER__REQUEST_TIMEOUT", "10s");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("server.request_timeout (10s)"), "{err}");
            assert!(err.contains("Alertmanager"), "{err}");
            jail.set_env("GATEWAY_SERVER__REQUEST_TIMEOUT", "9s");
            Config::load(None).unwrap();
            Ok(())
        });
    }

    #[test]
    fn a_durable_ack_wait_not_below_the_request_timeout_is_refused_at_load() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "g.yaml",
                "server:\n  request_timeout: 6s\naudit:\n  spool_dir: /var/spool/audit\n  durable_ack_timeout: 6s\n",
            )?;
            let err = Config::load(Some(Path::new("g.yaml")))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(
                    "audit.durable_ack_timeout (6s) must be below server.request_timeout (6s)"
                ),
                "{err}"
            );
            // Without durable acknowledgement the wait never happens.
            jail.set_env("GATEWAY_AUDIT__DURABLE_ACK", "false");
            Config::load(Some(Path::new("g.yaml"))).unwrap();
            Ok(())
        });
    }

    #[test]
    fn a_config_built_in_code_is_checked_too() {
        let mut c = Config::default();
        c.audit.spool_dir = Some("/var/spool/audit".into());
        c.audit.durable_ack_timeout = Duration::from_secs(9);
        assert!(c.check().unwrap_err().contains("audit.durable_ack_timeout"));
        c.audit.spool_segment_bytes = c.audit.spool_max_bytes;
        assert!(c.check().unwrap_err().starts_with("audit: spool_max_bytes"));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("g.yaml", "remediation:\n  backnd: memory\n")?;
            let err = Config::load(Some(Path::new("g.yaml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("backnd"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_audit_key_from_the_environment_is_an_error_naming_it() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GATEWAY_AUDIT__DATA_STORAGE_ULR", "http://x:1");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("data_storage_ulr"), "{err}");
            Ok(())
        });
    }
}
