//! Rendered manifests parsed into typed Kubernetes objects.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;
use serde_json::Value;

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A document is not YAML.
    #[error("document {index}: not valid YAML: {source}")]
    Yaml {
        index: usize,
        source: serde_yaml::Error,
    },
    /// A document does not match the schema of its kind.
    #[error("{kind} {name}: does not match the Kubernetes schema: {source}")]
    Schema {
        kind: String,
        name: String,
        source: serde_json::Error,
    },
}

/// Every object of a rendered overlay that the checks look at.
#[derive(Debug, Default)]
pub struct Objects {
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    pub services: Vec<Service>,
    pub service_accounts: Vec<ServiceAccount>,
    pub deployments: Vec<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
    pub jobs: Vec<Job>,
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Kinds seen, with counts (for the summary).
    pub kinds: BTreeMap<String, usize>,
}

/// A Pod template of a workload, with where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    /// `Deployment`, `StatefulSet` or `Job`.
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a PodSpec,
}

impl Workload<'_> {
    /// `Deployment kubernaut-system/gateway`.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    doc: Value,
    kind: &str,
    name: &str,
) -> Result<T, LoadError> {
    serde_json::from_value(doc).map_err(|source| LoadError::Schema {
        kind: kind.to_owned(),
        name: name.to_owned(),
        source,
    })
}

impl Objects {
    /// Parses a multi-document YAML stream (what `kubectl kustomize` prints).
    pub fn parse(yaml: &str) -> Result<Self, LoadError> {
        let mut objects = Objects::default();
        for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
            let doc =
                Value::deserialize(document).map_err(|source| LoadError::Yaml { index, source })?;
            if doc.is_null() {
                continue;
            }
            let kind = doc["kind"].as_str().unwrap_or("").to_owned();
            let name = doc["metadata"]["name"].as_str().unwrap_or("").to_owned();
            *objects.kinds.entry(kind.clone()).or_default() += 1;
            match kind.as_str() {
                "ConfigMap" => objects.config_maps.push(typed(doc, &kind, &name)?),
                "Secret" => objects.secrets.push(typed(doc, &kind, &name)?),
                "Service" => objects.services.push(typed(doc, &kind, &name)?),
                "ServiceAccount" => objects.service_accounts.push(typed(doc, &kind, &name)?),
                "Deployment" => objects.deployments.push(typed(doc, &kind, &name)?),
                "StatefulSet" => objects.stateful_sets.push(typed(doc, &kind, &name)?),
                "Job" => objects.jobs.push(typed(doc, &kind, &name)?),
                "Role" => objects.roles.push(typed(doc, &kind, &name)?),
                "ClusterRole" => objects.cluster_roles.push(typed(doc, &kind, &name)?),
                "RoleBinding" => objects.role_bindings.push(typed(doc, &kind, &name)?),
                "ClusterRoleBinding" => objects
                    .cluster_role_bindings
                    .push(typed(doc, &kind, &name)?),
                _ => {}
            }
        }
        Ok(objects)
    }

    /// Every Pod template: Deployments, StatefulSets and Jobs.
    pub fn workloads(&self) -> Vec<Workload<'_>> {
        let mut out = Vec::new();
        for d in &self.deployments {
            if let Some(spec) = d.spec.template.spec.as_ref() {
                out.push(Workload {
                    kind: "Deployment",
                    namespace: ns(&d.metadata),
                    name: name(&d.metadata),
                    spec,
                });
            }
        }
        for s in &self.stateful_sets {
            if let Some(spec) = s.spec.template.spec.as_ref() {
                out.push(Workload {
                    kind: "StatefulSet",
                    namespace: ns(&s.metadata),
                    name: name(&s.metadata),
                    spec,
                });
            }
        }
        for j in &self.jobs {
            if let Some(spec) = j.spec.as_ref().and_then(|s| s.template.spec.as_ref()) {
                out.push(Workload {
                    kind: "Job",
                    namespace: ns(&j.metadata),
                    name: name(&j.metadata),
                    spec,
                });
            }
        }
        out
    }

    /// The Service `name` in `namespace`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| ns(&s.metadata) == namespace && self::name(&s.metadata) == name)
    }

    /// Namespaces that hold a Service (where `name.namespace` resolves).
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.services
            .iter()
            .map(|s| ns(&s.metadata).to_owned())
            .collect()
    }

    /// The ConfigMap `name` in `namespace`.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .iter()
            .find(|c| ns(&c.metadata) == namespace && self::name(&c.metadata) == name)
    }
}

/// An object's namespace (`default` when unset, as the API server would).
pub fn ns(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

/// An object's name.
pub fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}
