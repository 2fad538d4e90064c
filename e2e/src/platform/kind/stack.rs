//! What the Kind platform knows about the stack, read from the rendered overlay.
//!
//! Nothing here repeats a manifest: the workloads are found through the
//! Services named in [`audit_sdk::names`] (the Deployment or StatefulSet whose
//! Pods the Service selects), and the host URLs come from the Services'
//! NodePorts mapped through the Kind cluster config's `extraPortMappings`.
//! Renaming a workload or moving a NodePort in `deploy/` is picked up here
//! instead of silently testing something else.

use std::collections::BTreeMap;
use std::fmt;

use audit_sdk::names::{
    API_PORT, DATA_STORAGE_SERVICE, GATEWAY_SERVICE, HEALTH_PORT, NAMESPACE, POSTGRES_SERVICE,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use url::Url;

use crate::platform::{Component, Endpoints};
use crate::preflight::objects::{name, ns, Objects};

/// A workload's kind, for the scale subresource and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
        })
    }
}

/// One workload and how to find its Pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSet {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// The Service that selects these Pods.
    pub service: String,
    /// Label selector of the Pods (`app.kubernetes.io/name=gateway`).
    pub selector: String,
    /// Replicas the overlay asks for (what `start` scales back to).
    pub replicas: i32,
    /// The main container (the first one).
    pub container: String,
    /// Init containers, in order (`migrate` for DataStorage).
    pub init_containers: Vec<String>,
}

impl PodSet {
    /// `Deployment kubernaut-system/gateway`.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The stack as the overlay defines it.
#[derive(Debug, Clone)]
pub struct Stack {
    pub data_storage: PodSet,
    pub gateway: PodSet,
    /// Absent when the overlay has no `postgresql` Service (DataStorage on SQLite).
    pub postgres: Option<PodSet>,
    /// Where the host reaches the services (NodePorts through Kind's port mappings).
    pub endpoints: Endpoints,
    /// CustomResourceDefinitions of the overlay: names and their documents.
    pub crds: Vec<(String, String)>,
}

impl Stack {
    /// Reads the stack from `kubectl kustomize` output and the Kind cluster
    /// config (`deploy/kind/cluster.yaml`).
    pub fn from_rendered(rendered: &str, kind_config: &str) -> anyhow::Result<Self> {
        let objects = Objects::parse(rendered)?;
        let mappings = port_mappings(kind_config)?;
        let data_storage = pod_set(&objects, DATA_STORAGE_SERVICE)?.ok_or_else(|| {
            anyhow::anyhow!("the overlay has no Service {NAMESPACE}/{DATA_STORAGE_SERVICE}")
        })?;
        let gateway = pod_set(&objects, GATEWAY_SERVICE)?.ok_or_else(|| {
            anyhow::anyhow!("the overlay has no Service {NAMESPACE}/{GATEWAY_SERVICE}")
        })?;
        let postgres = pod_set(&objects, POSTGRES_SERVICE)?;
        let url = |service: &str, port: u16| host_url(&objects, &mappings, service, port);
        let endpoints = Endpoints {
            data_storage_api: url(DATA_STORAGE_SERVICE, API_PORT)?,
            data_storage_health: url(DATA_STORAGE_SERVICE, HEALTH_PORT)?,
            gateway_api: url(GATEWAY_SERVICE, API_PORT)?,
            gateway_health: url(GATEWAY_SERVICE, HEALTH_PORT)?,
        };
        Ok(Self {
            data_storage,
            gateway,
            postgres,
            endpoints,
            crds: crds(rendered)?,
        })
    }

    /// The workload of `component`, if the stack has it.
    pub fn pod_set(&self, component: Component) -> Option<&PodSet> {
        match component {
            Component::DataStorage => Some(&self.data_storage),
            Component::Gateway => Some(&self.gateway),
            Component::Postgres => self.postgres.as_ref(),
        }
    }

    /// The CRD documents as one YAML stream.
    pub fn crd_manifest(&self) -> String {
        self.crds
            .iter()
            .map(|(_, doc)| format!("---\n{doc}"))
            .collect()
    }

    /// The CRD names.
    pub fn crd_names(&self) -> Vec<String> {
        self.crds.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// The workload whose Pods the Service `service` (in [`NAMESPACE`]) selects;
/// `None` when there is no such Service.
fn pod_set(objects: &Objects, service: &str) -> anyhow::Result<Option<PodSet>> {
    let Some(svc) = objects.service(NAMESPACE, service) else {
        return Ok(None);
    };
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow::anyhow!("Service {NAMESPACE}/{service} has no selector"))?;
    let selects = |template: &PodTemplateSpec| {
        let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
        selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    };
    let mut found = Vec::new();
    for d in &objects.deployments {
        let spec = &d.spec;
        if ns(&d.metadata) == NAMESPACE && selects(&spec.template) {
            found.push((
                WorkloadKind::Deployment,
                name(&d.metadata),
                &spec.selector,
                spec.replicas,
                &spec.template,
            ));
        }
    }
    for s in &objects.stateful_sets {
        let spec = &s.spec;
        if ns(&s.metadata) == NAMESPACE && selects(&spec.template) {
            found.push((
                WorkloadKind::StatefulSet,
                name(&s.metadata),
                &spec.selector,
                spec.replicas,
                &spec.template,
            ));
        }
    }
    let [(kind, workload, pod_selector, replicas, template)] = found.as_slice() else {
        anyhow::bail!(
            "Service {NAMESPACE}/{service} selects {} workloads, expected exactly one",
            found.len()
        );
    };
    let spec = template
        .spec
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{kind} {NAMESPACE}/{workload} has no Pod spec"))?;
    let container = spec
        .containers
        .first()
        .ok_or_else(|| anyhow::anyhow!("{kind} {NAMESPACE}/{workload} has no container"))?;
    Ok(Some(PodSet {
        kind: *kind,
        namespace: NAMESPACE.to_owned(),
        name: (*workload).to_owned(),
        service: service.to_owned(),
        selector: selector_string(pod_selector)?,
        replicas: replicas.unwrap_or(1),
        container: container.name.clone(),
        init_containers: spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect(),
    }))
}

/// `matchLabels` as a label selector string (sorted, `k=v,k=v`).
fn selector_string(selector: &LabelSelector) -> anyhow::Result<String> {
    if selector
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        anyhow::bail!("matchExpressions selectors are not supported by the Kind platform");
    }
    let labels: BTreeMap<_, _> = selector
        .match_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if labels.is_empty() {
        anyhow::bail!("an empty selector would match every Pod");
    }
    Ok(labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(","))
}

#[derive(Deserialize)]
struct KindCluster {
    #[serde(default)]
    nodes: Vec<KindNode>,
}

#[derive(Deserialize)]
struct KindNode {
    #[serde(default, rename = "extraPortMappings")]
    extra_port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Clone, Deserialize)]
struct PortMapping {
    #[serde(rename = "containerPort")]
    container_port: i32,
    #[serde(rename = "hostPort")]
    host_port: Option<i32>,
    #[serde(rename = "listenAddress")]
    listen_address: Option<String>,
}

/// Node port → (host address, host port), from the Kind cluster config.
fn port_mappings(kind_config: &str) -> anyhow::Result<BTreeMap<i32, (String, i32)>> {
    let cluster: KindCluster = serde_yaml::from_str(kind_config)
        .map_err(|e| anyhow::anyhow!("the Kind cluster config is not valid: {e}"))?;
    Ok(cluster
        .nodes
        .iter()
        .flat_map(|n| n.extra_port_mappings.iter())
        .map(|m| {
            // Kind listens on all addresses by default; the test process uses loopback.
            let address = match m.listen_address.as_deref() {
                None | Some("" | "0.0.0.0" | "::") => "127.0.0.1".to_owned(),
                Some(a) => a.to_owned(),
            };
            (
                m.container_port,
                (address, m.host_port.unwrap_or(m.container_port)),
            )
        })
        .collect())
}

/// `http://<host>:<host port>/` for `service`'s port `port`.
fn host_url(
    objects: &Objects,
    mappings: &BTreeMap<i32, (String, i32)>,
    service: &str,
    port: u16,
) -> anyhow::Result<Url> {
    let object = format!("Service {NAMESPACE}/{service}");
    let svc = objects
        .service(NAMESPACE, service)
        .ok_or_else(|| anyhow::anyhow!("the overlay has no {object}"))?;
    let node_port = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| p.port == i32::from(port))
        .and_then(|p| p.node_port)
        .ok_or_else(|| {
            anyhow::anyhow!("{object} port {port} has no nodePort; the Kind platform reaches services through NodePorts")
        })?;
    let (host, host_port) = mappings.get(&node_port).ok_or_else(|| {
        anyhow::anyhow!("{object} nodePort {node_port} has no extraPortMappings entry in the Kind cluster config")
    })?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    Ok(Url::parse(&format!("http://{host}:{host_port}/"))?)
}

/// `(name, document)` of every CustomResourceDefinition in the stream.
fn crds(rendered: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(rendered) {
        let doc = serde_yaml::Value::deserialize(document)?;
        if doc.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition") {
            let name = doc
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_owned();
            out.push((name, serde_yaml::to_string(&doc)?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVERLAY: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: data-storage-service, namespace: kubernaut-system}
spec:
  type: NodePort
  selector: {app: ds}
  ports:
    - {name: api, port: 8080, nodePort: 31234}
    - {name: health, port: 8081, nodePort: 31235}
---
apiVersion: v1
kind: Service
metadata: {name: gateway-service, namespace: kubernaut-system}
spec:
  type: NodePort
  selector: {app: gw}
  ports:
    - {name: api, port: 8080, nodePort: 31236}
    - {name: health, port: 8081, nodePort: 31237}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: store, namespace: kubernaut-system}
spec:
  replicas: 2
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds, tier: x}}
    spec:
      initContainers: [{name: migrate, image: datastorage}]
      containers: [{name: store, image: datastorage}, {name: sidecar, image: x}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: gw, namespace: kubernaut-system}
spec:
  selector: {matchLabels: {app: gw}}
  template:
    metadata: {labels: {app: gw}}
    spec:
      containers: [{name: gateway, image: gateway}]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec: {group: example.com}
"#;

    const KIND: &str = r#"
kind: Cluster
nodes:
  - role: control-plane
    extraPortMappings:
      - {containerPort: 31234, hostPort: 41234}
      - {containerPort: 31235, hostPort: 41235, listenAddress: 127.0.0.2}
      - {containerPort: 31236, hostPort: 41236, listenAddress: 0.0.0.0}
      - {containerPort: 31237}
"#;

    #[test]
    fn workloads_are_found_through_their_services() {
        let stack = Stack::from_rendered(OVERLAY, KIND).unwrap();
        let ds = &stack.data_storage;
        assert_eq!(ds.describe(), "Deployment kubernaut-system/store");
        assert_eq!(ds.selector, "app=ds");
        assert_eq!(ds.replicas, 2);
        assert_eq!(ds.container, "store");
        assert_eq!(ds.init_containers, ["migrate"]);
        assert_eq!(stack.gateway.name, "gw");
        assert_eq!(stack.gateway.replicas, 1, "replicas default to 1");
        assert!(
            stack.postgres.is_none(),
            "no postgresql Service, no wait for it"
        );
        assert_eq!(stack.crd_names(), ["widgets.example.com"]);
        assert!(stack.crd_manifest().contains("group: example.com"));
    }

    #[test]
    fn host_urls_follow_node_ports_through_the_kind_port_mappings() {
        let e = Stack::from_rendered(OVERLAY, KIND).unwrap().endpoints;
        assert_eq!(e.data_storage_api.as_str(), "http://127.0.0.1:41234/");
        assert_eq!(e.data_storage_health.as_str(), "http://127.0.0.2:41235/");
        assert_eq!(e.gateway_api.as_str(), "http://127.0.0.1:41236/");
        assert_eq!(e.gateway_health.as_str(), "http://127.0.0.1:31237/");
    }

    #[test]
    fn an_unmapped_node_port_is_an_error_naming_it() {
        let kind = "nodes: [{extraPortMappings: [{containerPort: 31234}]}]";
        let err = Stack::from_rendered(OVERLAY, kind).unwrap_err().to_string();
        assert!(
            err.contains("Service kubernaut-system/data-storage-service nodePort 31235"),
            "{err}"
        );
    }
}
