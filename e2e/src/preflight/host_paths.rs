//! Check 2: nothing of the host reaches into a Pod.
//!
//! The reference platform's test harness put the developer's `KUBECONFIG`
//! (`/Users/…/.kube/config`) into DataStorage's environment; the Pod crash-looped.

use super::objects::Objects;
use super::{Check, Finding};

/// Prefixes of paths that only exist on a developer's or CI host.
const HOST_PREFIXES: &[&str] = &[
    "/Users/",
    "/home/",
    "/root/",
    "/private/var/",
    "/tmp/",
    "C:\\",
];

pub fn check(objects: &Objects, allow: &[String]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for w in objects.workloads() {
        let containers = w
            .spec
            .init_containers
            .iter()
            .flatten()
            .chain(&w.spec.containers);
        for c in containers {
            for env in c.env.iter().flatten() {
                let field = format!("containers[{}].env[{}]", c.name, env.name);
                if env.name == "KUBECONFIG" {
                    findings.push(Finding {
                        check: Check::HostPath,
                        object: w.describe(),
                        field,
                        problem: format!(
                            "sets KUBECONFIG{}; inside a Pod the in-cluster ServiceAccount configuration must be used",
                            env.value.as_deref().map(|v| format!("={v}")).unwrap_or_default()
                        ),
                        fix: "remove the KUBECONFIG variable; services use the projected ServiceAccount token".into(),
                    });
                } else if let Some(value) = env
                    .value
                    .as_deref()
                    .filter(|v| HOST_PREFIXES.iter().any(|p| v.starts_with(p)))
                {
                    findings.push(Finding {
                        check: Check::HostPath,
                        object: w.describe(),
                        field,
                        problem: format!(
                            "carries the host path {value}, which does not exist in the container"
                        ),
                        fix: "use a path inside the image or a mounted volume".into(),
                    });
                }
            }
        }
        for volume in w.spec.volumes.iter().flatten() {
            if let Some(host_path) = &volume.host_path {
                if !allow.contains(&host_path.path) {
                    findings.push(Finding {
                        check: Check::HostPath,
                        object: w.describe(),
                        field: format!("volumes[{}].hostPath", volume.name),
                        problem: format!(
                            "mounts the node's {} (not on the allow-list)",
                            host_path.path
                        ),
                        fix: "use an emptyDir, a PersistentVolumeClaim, a ConfigMap or a Secret"
                            .into(),
                    });
                }
            }
        }
    }
    findings
}
