//! Kubernetes names and ports of the platform, defined once.
//!
//! Service configuration defaults, the manifests' preflight checks and the e2e
//! suite all read these, so a Service renamed in one place cannot silently
//! diverge from the URL another service uses to reach it (the reference
//! platform lost every audit event of a run to exactly that).

/// Namespace of the platform's services.
pub const NAMESPACE: &str = "kubernaut-system";
/// Service name of DataStorage.
pub const DATA_STORAGE_SERVICE: &str = "data-storage-service";
/// ServiceAccount of DataStorage.
pub const DATA_STORAGE_SERVICE_ACCOUNT: &str = "data-storage-sa";
/// ClusterRole every DataStorage caller is bound to.
pub const DATA_STORAGE_CLIENT_ROLE: &str = "data-storage-client";
/// Service name of the Gateway.
pub const GATEWAY_SERVICE: &str = "gateway-service";
/// ServiceAccount of the Gateway.
pub const GATEWAY_SERVICE_ACCOUNT: &str = "gateway";
/// Prefix of every cluster-scoped object the platform installs (ClusterRoles,
/// ClusterRoleBindings), so none can collide with another product's.
pub const CLUSTER_SCOPED_PREFIX: &str = "kubernaut-audit-";
/// ClusterRole of the Gateway itself: owner `get`s, the CRD check, reviews.
pub const GATEWAY_CLUSTER_ROLE: &str = "kubernaut-audit-gateway";
/// ClusterRole every sender of signals is bound to (`create` on `gateway-service`).
pub const GATEWAY_SIGNAL_SENDER_ROLE: &str = "kubernaut-audit-gateway-signal-sender";
/// ClusterRole of DataStorage's own reviews (TokenReview, SubjectAccessReview).
pub const DATA_STORAGE_AUTH_REVIEWER_ROLE: &str = "kubernaut-audit-data-storage-auth-reviewer";
/// Where a caller of DataStorage mounts its projected, audience-bound token.
pub const DATA_STORAGE_TOKEN_PATH: &str = "/var/run/secrets/kubernaut.ai/data-storage/token";
/// Audience of tokens for DataStorage: its Service name.
pub const DATA_STORAGE_AUDIENCE: &str = DATA_STORAGE_SERVICE;
/// Audience of tokens for the Gateway: its Service name.
pub const GATEWAY_AUDIENCE: &str = GATEWAY_SERVICE;
/// Service name of PostgreSQL.
pub const POSTGRES_SERVICE: &str = "postgresql";

/// The ClusterRole that grants callers the verbs on `service` (named in 403s).
pub fn client_role_of(service: &str) -> &'static str {
    match service {
        GATEWAY_SERVICE => GATEWAY_SIGNAL_SENDER_ROLE,
        _ => DATA_STORAGE_CLIENT_ROLE,
    }
}

/// The ClusterRole that lets `service` itself create TokenReviews and
/// SubjectAccessReviews.
pub fn reviewer_role_of(service: &str) -> &'static str {
    match service {
        GATEWAY_SERVICE => GATEWAY_CLUSTER_ROLE,
        _ => DATA_STORAGE_AUTH_REVIEWER_ROLE,
    }
}

/// API port of every service (REST and gRPC).
pub const API_PORT: u16 = 8080;
/// Health port (`/healthz`, `/readyz`).
pub const HEALTH_PORT: u16 = 8081;
/// Metrics port (`/metrics`).
pub const METRICS_PORT: u16 = 9090;

/// DataStorage's in-cluster URL, as services configure it.
pub fn data_storage_url() -> String {
    format!("http://{DATA_STORAGE_SERVICE}.{NAMESPACE}.svc.cluster.local:{API_PORT}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_in_cluster_url_names_the_service_namespace_and_port() {
        assert_eq!(
            super::data_storage_url(),
            "http://data-storage-service.kubernaut-system.svc.cluster.local:8080"
        );
    }
}
