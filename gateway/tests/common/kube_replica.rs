//! A Gateway replica on a `kube-fake` API server: the setup the Kubernetes
//! backend's tests and its bench (`benches/kubernetes.rs`, which includes
//! this file by path) share, so both measure the same stack.
#![allow(dead_code)] // each user takes a different subset

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use audit_sdk::AuditStore;
use chrono::Utc;
use gateway::audit::GatewayAudit;
use gateway::config::KubernetesConfig;
use gateway::domain::intake::Intake;
use gateway::domain::signal::{ResourceRef, Signal, SignalSource};
use gateway::remediation::kubernetes::{client_config, KubernetesBackend};
use gateway::remediation::RemediationBackend;
use kube_fake::FakeApiServer;
use serde_json::json;

/// The Gateway's namespace (the default of [`KubernetesConfig`]).
pub const NS: &str = "kubernaut-system";

/// The RemediationRequest collection in [`NS`].
pub const RRS: &str = "/apis/kubernaut.ai/v1alpha1/namespaces/kubernaut-system/remediationrequests";

/// Header every call of replica `name` carries (`x-replica: <name>`), so a
/// [`kube_fake::Fault`] can target one replica.
pub const REPLICA_HEADER: &str = "x-replica";

/// The client replica `name` uses on `fake`: the production client stack as
/// [`client_config`] shapes it, every call carrying [`REPLICA_HEADER`].
pub fn client(fake: &FakeApiServer, settings: &KubernetesConfig, name: &str) -> kube::Client {
    let mut config = client_config(fake.config(), settings);
    config.headers.push((
        REPLICA_HEADER.parse().expect("header name"),
        name.parse().expect("replica names are header values"),
    ));
    kube::Client::try_from(config).expect("client for a loopback URL")
}

/// A backend named `name` (its holder identity) on `fake`, over [`client`].
pub fn backend(fake: &FakeApiServer, settings: &KubernetesConfig, name: &str) -> KubernetesBackend {
    KubernetesBackend::new(client(fake, settings, name), settings, name)
}

/// [`backend`] once its watch cache has the first full list (steady state).
pub async fn synced_backend(
    fake: &FakeApiServer,
    settings: &KubernetesConfig,
    name: &str,
) -> Arc<KubernetesBackend> {
    let backend = Arc::new(backend(fake, settings, name));
    tokio::time::timeout(Duration::from_secs(10), backend.synced())
        .await
        .expect("the watch cache lists within 10 s");
    backend
}

/// The intake over `backend`, auditing to a store that is never reached
/// (recording never blocks; the answers do not depend on it).
pub fn intake(backend: Arc<dyn RemediationBackend>) -> Intake {
    let audit = GatewayAudit::new(
        AuditStore::new(audit_sdk::AuditConfig::new("http://127.0.0.1:9"))
            .expect("an SDK config with defaults"),
    );
    Intake::new(backend, audit, None)
}

/// A firing alert about Deployment `payments/api-<workload>`.
pub fn workload_signal(workload: usize) -> Signal {
    let name = format!("api-{workload}");
    Signal {
        name: "HighMemory".into(),
        severity: "critical".into(),
        source: SignalSource::Prometheus,
        target: ResourceRef::new(Some("payments"), "Deployment", &name),
        labels: BTreeMap::from([("alertname".into(), "HighMemory".into())]),
        annotations: BTreeMap::new(),
        firing_time: None,
        received_time: Utc::now(),
        payload: json!({"labels": {"deployment": name}}),
    }
}
