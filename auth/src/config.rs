//! Authentication settings, embedded by each service as `auth:`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where Kubernetes mounts the Pod's namespace.
pub const SERVICE_ACCOUNT_NAMESPACE_PATH: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `kubernetes` inside a Pod, `disabled` (logged loudly) outside one.
    #[default]
    Auto,
    /// TokenReview + SubjectAccessReview.
    Kubernetes,
    /// A tokens file.
    Static,
    /// No checks (development only).
    Disabled,
}

/// Authentication settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The mode.
    pub mode: AuthMode,
    /// `static` mode: YAML map of token → `{subject, verbs}`.
    pub tokens_file: Option<PathBuf>,
    /// `kubernetes` mode: namespace of the service's own Service; default
    /// `POD_NAMESPACE`, then the ServiceAccount namespace file.
    pub namespace: Option<String>,
    /// `kubernetes` mode: how long a review decision is reused.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// `kubernetes` mode: timeout of one review call.
    #[serde(with = "humantime_serde")]
    pub review_timeout: Duration,
    /// `kubernetes` mode: API server URL. Unset (the normal case) means the Pod's
    /// in-cluster configuration; `KUBECONFIG` is never read.
    pub api_server_url: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Auto,
            tokens_file: None,
            namespace: None,
            cache_ttl: Duration::from_secs(10),
            review_timeout: Duration::from_secs(5),
            api_server_url: None,
        }
    }
}

impl AuthConfig {
    /// The mode after resolving `auto`: `kubernetes` when the Pod's in-cluster
    /// configuration is present, otherwise `disabled`.
    pub fn effective_mode(&self) -> AuthMode {
        match self.mode {
            AuthMode::Auto if in_cluster() => AuthMode::Kubernetes,
            AuthMode::Auto => AuthMode::Disabled,
            other => other,
        }
    }

    /// The namespace of the service's own Service.
    pub fn resolve_namespace(&self) -> Option<String> {
        self.namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .or_else(|| {
                std::fs::read_to_string(Path::new(SERVICE_ACCOUNT_NAMESPACE_PATH))
                    .ok()
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
            })
    }
}

fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && Path::new(audit_sdk::config::SERVICE_ACCOUNT_TOKEN_PATH).exists()
}
