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
    /// `kubernetes` inside a Pod, `disabled` (logged loudly) outside one; a Pod
    /// without a mounted ServiceAccount token is a startup error, never `disabled`.
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
    /// `kubernetes` mode: most review decisions kept (older ones are evicted).
    pub cache_capacity: u64,
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
            cache_capacity: 10_000,
            review_timeout: Duration::from_secs(5),
            api_server_url: None,
        }
    }
}

impl AuthConfig {
    /// The mode after resolving `auto` for this process's environment.
    pub fn effective_mode(&self) -> Result<AuthMode, crate::AuthError> {
        self.mode_for(&PodEnvironment::current())
    }

    /// The mode after resolving `auto` in `env`: `kubernetes` in a Pod with
    /// its ServiceAccount token, `disabled` outside any Pod, and an error in
    /// a Pod without a token (auth must never silently switch off in production).
    pub fn mode_for(&self, env: &PodEnvironment) -> Result<AuthMode, crate::AuthError> {
        match self.mode {
            AuthMode::Auto if env.in_pod && env.token_mounted => Ok(AuthMode::Kubernetes),
            AuthMode::Auto if env.in_pod => Err(crate::AuthError::Config(format!(
                "auth.mode is auto and this process runs in a Pod (KUBERNETES_SERVICE_HOST is set), \
                 but no ServiceAccount token is mounted at {}: mount one \
                 (automountServiceAccountToken: true or a projected serviceAccountToken volume), \
                 or set auth.mode explicitly",
                audit_sdk::config::SERVICE_ACCOUNT_TOKEN_PATH
            ))),
            AuthMode::Auto => Ok(AuthMode::Disabled),
            other => Ok(other),
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

/// What `auto` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodEnvironment {
    /// `KUBERNETES_SERVICE_HOST` is set: the process runs in a Pod.
    pub in_pod: bool,
    /// The ServiceAccount token file exists.
    pub token_mounted: bool,
}

impl PodEnvironment {
    /// This process's.
    pub fn current() -> Self {
        Self {
            in_pod: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
            token_mounted: Path::new(audit_sdk::config::SERVICE_ACCOUNT_TOKEN_PATH).exists(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> AuthConfig {
        AuthConfig::default()
    }

    #[test]
    fn auto_in_a_pod_without_a_token_is_a_startup_error() {
        let env = PodEnvironment {
            in_pod: true,
            token_mounted: false,
        };
        let e = auto().mode_for(&env).unwrap_err();
        assert!(e.to_string().contains("no ServiceAccount token"), "{e}");
    }

    #[test]
    fn auto_is_kubernetes_in_a_pod_with_a_token_and_disabled_outside() {
        let pod = PodEnvironment {
            in_pod: true,
            token_mounted: true,
        };
        let laptop = PodEnvironment {
            in_pod: false,
            token_mounted: false,
        };
        assert_eq!(auto().mode_for(&pod).unwrap(), AuthMode::Kubernetes);
        assert_eq!(auto().mode_for(&laptop).unwrap(), AuthMode::Disabled);
        let explicit = AuthConfig {
            mode: AuthMode::Disabled,
            ..AuthConfig::default()
        };
        let bare_pod = PodEnvironment {
            in_pod: true,
            token_mounted: false,
        };
        assert_eq!(explicit.mode_for(&bare_pod).unwrap(), AuthMode::Disabled);
    }
}
