//! Check 1: every URL into the cluster names an existing Service and port.
//!
//! The reference platform's gateway ConfigMap said
//! `datastorage.kubernaut-system.svc.cluster.local` while the Service was
//! `data-storage-service`: DNS "no such host", every audit event lost.

use super::objects::{name, ns, Objects};
use super::{Check, Finding};

/// A URL found in a manifest, with the Service it points at.
#[derive(Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    pub url: String,
    pub service: String,
    /// `None` for a bare name (same namespace as the object).
    pub namespace: Option<String>,
    pub port: u16,
}

/// Every `scheme://…` URL in `text`.
pub fn urls_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (start, _) in text.match_indices("://") {
        let scheme_start = text[..start]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '}' | ']' | '>'))
            .map_or(text.len(), |i| start + i);
        if scheme_start < start {
            found.push(text[scheme_start..end].to_owned());
        }
    }
    found
}

/// The Service a URL points at, when it points into the cluster:
/// `name.namespace.svc[.cluster.local]`, or a bare `name` with an explicit port.
pub fn cluster_target(raw: &str) -> Option<ClusterUrl> {
    let url = url::Url::parse(raw).ok()?;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    let labels: Vec<&str> = host.split('.').collect();
    let in_cluster = host.ends_with(".svc") || host.ends_with(".svc.cluster.local");
    if in_cluster && labels.len() >= 3 {
        return Some(ClusterUrl {
            url: raw.to_owned(),
            service: labels[0].to_owned(),
            namespace: Some(labels[1].to_owned()),
            port,
        });
    }
    let bare = labels.len() == 1 && url.port().is_some() && host != "localhost";
    bare.then(|| ClusterUrl {
        url: raw.to_owned(),
        service: host.to_owned(),
        namespace: None,
        port,
    })
}

/// Every (object, field, text) a URL may hide in: ConfigMap data, container env.
pub fn url_sources(objects: &Objects) -> Vec<(String, String, String, String)> {
    let mut sources = Vec::new();
    for cm in &objects.config_maps {
        for (key, value) in cm.data.iter().flatten() {
            sources.push((
                format!("ConfigMap {}/{}", ns(&cm.metadata), name(&cm.metadata)),
                format!("data[{key}]"),
                ns(&cm.metadata).to_owned(),
                value.clone(),
            ));
        }
    }
    for w in objects.workloads() {
        let containers = w
            .spec
            .init_containers
            .iter()
            .flatten()
            .chain(&w.spec.containers);
        for c in containers {
            for env in c.env.iter().flatten() {
                if let Some(value) = &env.value {
                    sources.push((
                        w.describe(),
                        format!("containers[{}].env[{}]", c.name, env.name),
                        w.namespace.to_owned(),
                        value.clone(),
                    ));
                }
            }
        }
    }
    sources
}

pub fn check(objects: &Objects) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (object, field, namespace, text) in url_sources(objects) {
        for raw in urls_in(&text) {
            let Some(target) = cluster_target(&raw) else {
                continue;
            };
            let target_ns = target
                .namespace
                .clone()
                .unwrap_or_else(|| namespace.clone());
            let in_ns: Vec<_> = objects
                .services
                .iter()
                .filter(|s| ns(&s.metadata) == target_ns)
                .collect();
            match objects.service(&target_ns, &target.service) {
                None => {
                    let same_port: Vec<&str> = in_ns
                        .iter()
                        .filter(|s| ports(s).contains(&i32::from(target.port)))
                        .map(|s| name(&s.metadata))
                        .collect();
                    // Prefer the Service whose name resembles the one written
                    // (`datastorage` → `data-storage-service`).
                    let wanted = letters(&target.service);
                    let resembling: Vec<&str> = same_port
                        .iter()
                        .copied()
                        .filter(|n| letters(n).contains(&wanted) || wanted.contains(&letters(n)))
                        .collect();
                    let candidates = if resembling.is_empty() {
                        same_port
                    } else {
                        resembling
                    };
                    let fix = match candidates.as_slice() {
                        [only] => format!(
                            "use {}",
                            raw.replacen(&format!("{}.", target.service), &format!("{only}."), 1)
                                .replacen(
                                    &format!("//{}:", target.service),
                                    &format!("//{only}:"),
                                    1
                                )
                        ),
                        _ => format!(
                            "point it at one of the Services in {target_ns}: {}",
                            in_ns
                                .iter()
                                .map(|s| name(&s.metadata))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    findings.push(Finding {
                        check: Check::ServiceUrl,
                        object: object.clone(),
                        field: field.clone(),
                        problem: format!(
                            "URL {raw} names Service \"{}\" in namespace {target_ns}, which does not exist",
                            target.service
                        ),
                        fix,
                    });
                }
                Some(service) if !ports(service).contains(&i32::from(target.port)) => {
                    findings.push(Finding {
                        check: Check::ServiceUrl,
                        object: object.clone(),
                        field: field.clone(),
                        problem: format!(
                            "URL {raw} uses port {} but Service {target_ns}/{} exposes {:?}",
                            target.port,
                            target.service,
                            ports(service)
                        ),
                        fix: "use one of the Service's ports".into(),
                    });
                }
                Some(_) => {}
            }
        }
    }
    findings
}

fn letters(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

fn ports(service: &k8s_openapi::api::core::v1::Service) -> Vec<i32> {
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| p.port)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_found_in_yaml_text() {
        let text = "audit:\n  data_storage_url: http://a.b.svc.cluster.local:8080\nother: \"https://x.y:1/p\"\n";
        assert_eq!(
            urls_in(text),
            ["http://a.b.svc.cluster.local:8080", "https://x.y:1/p"]
        );
    }

    #[test]
    fn cluster_targets_are_recognised() {
        let t =
            cluster_target("http://data-storage-service.kubernaut-system.svc.cluster.local:8080")
                .unwrap();
        assert_eq!(
            (t.service.as_str(), t.namespace.as_deref(), t.port),
            ("data-storage-service", Some("kubernaut-system"), 8080)
        );
        let bare = cluster_target("http://postgresql:5432").unwrap();
        assert_eq!(
            (bare.service.as_str(), bare.namespace, bare.port),
            ("postgresql", None, 5432)
        );
        assert!(cluster_target("https://example.com/x").is_none());
        assert!(cluster_target("http://localhost:8080").is_none());
    }
}
