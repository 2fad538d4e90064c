//! Check 6: every NodePort is reachable from the host through Kind's
//! `extraPortMappings` (otherwise `make e2e` cannot reach the service).

use std::path::Path;

use serde::Deserialize;

use super::objects::{name, ns, Objects};
use super::{Check, Finding};

#[derive(Deserialize)]
struct Cluster {
    #[serde(default)]
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    #[serde(default, rename = "extraPortMappings")]
    extra_port_mappings: Vec<Mapping>,
}

#[derive(Deserialize)]
struct Mapping {
    #[serde(rename = "containerPort")]
    container_port: i32,
}

/// The node ports a Kind cluster config maps to the host.
pub fn load_kind_ports(path: &Path) -> anyhow::Result<Vec<i32>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let cluster: Cluster = serde_yaml::from_str(&text)?;
    Ok(cluster
        .nodes
        .iter()
        .flat_map(|n| n.extra_port_mappings.iter().map(|m| m.container_port))
        .collect())
}

pub fn check(objects: &Objects, mapped: &[i32]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &objects.services {
        for p in s.spec.iter().flat_map(|spec| spec.ports.iter().flatten()) {
            if let Some(node_port) = p.node_port.filter(|np| !mapped.contains(np)) {
                findings.push(Finding {
                    check: Check::NodePort,
                    object: format!("Service {}/{}", ns(&s.metadata), name(&s.metadata)),
                    field: format!("ports[{}].nodePort", p.name.as_deref().unwrap_or("?")),
                    problem: format!("{node_port} has no extraPortMappings entry in deploy/kind/cluster.yaml"),
                    fix: format!("add containerPort: {node_port} / hostPort: {node_port} to the Kind cluster config"),
                });
            }
        }
    }
    findings
}
