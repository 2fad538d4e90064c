//! Check 1: every address into the cluster names an existing Service and the
//! right port of it.
//!
//! The reference platform's gateway ConfigMap said
//! `datastorage.kubernaut-system.svc.cluster.local` while the Service was
//! `data-storage-service`: DNS "no such host", every audit event lost. The
//! same mistake hides in many spellings, so every one of them is resolved the
//! way cluster DNS would before it is checked:
//!
//! - `name`, `name.namespace`, `name.namespace.svc`,
//!   `name.namespace.svc.<cluster domain>`, each with or without a trailing dot;
//! - URLs (`scheme://host[:port]`) and scheme-less hosts (`store.postgres.host`
//!   next to a `port`, env vars named `*_HOST`);
//! - in ConfigMap data, Secret data, container `env`, `args` and `command`.
//!
//! A URL without a port is checked as the scheme's default port, and a URL that
//! reaches a Service's `health` or `metrics` port where the API is meant (the
//! key or variable names a URL, not a probe) is a finding too.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use serde_yaml::Value;

use super::objects::{name, ns, Objects};
use super::{Check, Context, Finding};

/// Service port names that serve no API (`audit_sdk::names`' health and metrics ports).
const NON_API_PORTS: &[&str] = &["health", "metrics"];

/// An address found in a manifest, with the Service it points at.
#[derive(Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    /// The text as written.
    pub url: String,
    pub service: String,
    /// `None` for a bare name (same namespace as the object).
    pub namespace: Option<String>,
    /// The port written, else the scheme's default; `None`: neither.
    pub port: Option<u16>,
    /// Whether the port was written out.
    pub explicit_port: bool,
    /// The cluster domain after `.svc.`, when written.
    pub domain: Option<String>,
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

/// The Service a URL points at, when it points into the cluster (see the
/// module doc for the spellings). `namespaces` are the namespaces the
/// manifests hold Services in: `name.namespace` is only a cluster address
/// when the second label is one of them (`example.com` is not).
pub fn cluster_target(raw: &str, namespaces: &BTreeSet<String>) -> Option<ClusterUrl> {
    let url = url::Url::parse(raw).ok()?;
    let host = url.host_str()?;
    let mut target = host_target(host, url.port_or_known_default(), namespaces)?;
    target.url = raw.to_owned();
    target.explicit_port = url.port().is_some();
    Some(target)
}

/// The Service a bare host name (`postgresql.kubernaut-system.svc`) points at.
pub fn host_target(
    host: &str,
    port: Option<u16>,
    namespaces: &BTreeSet<String>,
) -> Option<ClusterUrl> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let (service, namespace, domain) = match labels.as_slice() {
        [service] => (*service, None, None),
        [service, namespace] if namespaces.contains(*namespace) => {
            (*service, Some(*namespace), None)
        }
        [service, namespace, "svc"] => (*service, Some(*namespace), None),
        [service, namespace, "svc", domain @ ..] => {
            (*service, Some(*namespace), Some(domain.join(".")))
        }
        _ => return None,
    };
    let valid = |l: &str| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !valid(service) || !namespace.is_none_or(valid) {
        return None;
    }
    Some(ClusterUrl {
        url: host.to_owned(),
        service: service.to_owned(),
        namespace: namespace.map(str::to_owned),
        port,
        explicit_port: port.is_some(),
        domain,
    })
}

/// One text a URL may hide in.
pub struct Source {
    /// `ConfigMap kubernaut-system/gateway-config`.
    pub object: String,
    /// `data[config.yaml]`, `containers[gateway].env[X]`, …
    pub field: String,
    /// Namespace a bare name resolves in.
    pub namespace: String,
    pub text: String,
    /// An env var's name, when the text is one (`*_HOST` is a host).
    pub env_name: Option<String>,
}

/// Every text a URL may hide in: ConfigMap and Secret data, container env,
/// args and command.
pub fn url_sources(objects: &Objects) -> Vec<Source> {
    let mut sources = Vec::new();
    for cm in &objects.config_maps {
        for (key, value) in cm.data.iter().flatten() {
            sources.push(Source {
                object: format!("ConfigMap {}/{}", ns(&cm.metadata), name(&cm.metadata)),
                field: format!("data[{key}]"),
                namespace: ns(&cm.metadata).to_owned(),
                text: value.clone(),
                env_name: env_like(key),
            });
        }
    }
    for secret in &objects.secrets {
        let object = format!("Secret {}/{}", ns(&secret.metadata), name(&secret.metadata));
        let data = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()));
        let string_data = secret
            .string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k, v.clone()));
        for (key, text) in data.chain(string_data) {
            sources.push(Source {
                object: object.clone(),
                field: format!("data[{key}]"),
                namespace: ns(&secret.metadata).to_owned(),
                text,
                env_name: env_like(key),
            });
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
            let mut push = |field: String, text: &str, env_name: Option<&str>| {
                sources.push(Source {
                    object: w.describe(),
                    field,
                    namespace: w.namespace.to_owned(),
                    text: text.to_owned(),
                    env_name: env_name.map(str::to_owned),
                });
            };
            for env in c.env.iter().flatten() {
                if let Some(value) = &env.value {
                    push(
                        format!("containers[{}].env[{}]", c.name, env.name),
                        value,
                        Some(&env.name),
                    );
                }
            }
            for (field, list) in [("args", &c.args), ("command", &c.command)] {
                for (i, arg) in list.iter().flatten().enumerate() {
                    push(format!("containers[{}].{field}[{i}]", c.name), arg, None);
                }
            }
        }
    }
    sources
}

/// A data key that reads as an env var name (`envFrom` makes it one).
fn env_like(key: &str) -> Option<String> {
    let env = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    env.then(|| key.to_owned())
}

/// An address found in a source, with where exactly.
struct Found {
    target: ClusterUrl,
    /// Appended to the source's field (`store.postgres.host`).
    at: Option<String>,
    /// Whether the address is meant for an API (not a probe or metrics scrape).
    api: bool,
}

/// Every cluster address in one source.
fn addresses(source: &Source, namespaces: &BTreeSet<String>) -> Vec<Found> {
    let mut found = Vec::new();
    for raw in urls_in(&source.text) {
        if let Some(target) = cluster_target(&raw, namespaces) {
            let api = !["/metrics", "/healthz", "/readyz"]
                .iter()
                .any(|p| raw.ends_with(p));
            found.push(Found {
                target,
                at: None,
                api,
            });
        }
    }
    if let Some(env) = &source.env_name {
        if env.ends_with("_HOST") && !source.text.contains("://") {
            found.extend(
                host_target(source.text.trim(), None, namespaces).map(|target| Found {
                    target,
                    at: None,
                    api: true,
                }),
            );
        }
        return found;
    }
    // Structured configuration: `host:` keys (next to a `port:`) are addresses too.
    if let Ok(yaml) = serde_yaml::from_str::<Value>(&source.text) {
        if yaml.is_mapping() {
            yaml_hosts(&yaml, String::new(), namespaces, &mut found);
        }
    }
    found
}

fn yaml_hosts(value: &Value, path: String, namespaces: &BTreeSet<String>, out: &mut Vec<Found>) {
    let Value::Mapping(map) = value else {
        return;
    };
    let port = map
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok());
    for (key, child) in map {
        let Some(key) = key.as_str() else { continue };
        let child_path = if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        };
        match child {
            Value::String(host)
                if (key == "host" || key.ends_with("_host")) && !host.contains("://") =>
            {
                if let Some(target) = host_target(host, port, namespaces) {
                    out.push(Found {
                        target,
                        at: Some(child_path),
                        api: true,
                    });
                }
            }
            Value::Mapping(_) => yaml_hosts(child, child_path, namespaces, out),
            _ => {}
        }
    }
}

pub fn check(objects: &Objects, context: &Context) -> Vec<Finding> {
    let namespaces = objects.namespaces();
    let mut findings = Vec::new();
    for source in url_sources(objects) {
        for found in addresses(&source, &namespaces) {
            let field = match &found.at {
                Some(at) => format!("{} {at}", source.field),
                None => source.field.clone(),
            };
            let problem = problem(objects, &source, &found, context);
            if let Some((problem, fix)) = problem {
                findings.push(Finding {
                    check: Check::ServiceUrl,
                    object: source.object.clone(),
                    field,
                    problem,
                    fix,
                });
            }
        }
    }
    findings
}

/// What is wrong with one address, and the fix.
fn problem(
    objects: &Objects,
    source: &Source,
    found: &Found,
    context: &Context,
) -> Option<(String, String)> {
    let target = &found.target;
    let raw = &target.url;
    let target_ns = target
        .namespace
        .clone()
        .unwrap_or_else(|| source.namespace.clone());
    let in_ns: Vec<&Service> = objects
        .services
        .iter()
        .filter(|s| ns(&s.metadata) == target_ns)
        .collect();
    let Some(service) = objects.service(&target_ns, &target.service) else {
        let same_port: Vec<&str> = in_ns
            .iter()
            .filter(|s| target.port.is_none_or(|p| ports(s).contains(&i32::from(p))))
            .map(|s| name(&s.metadata))
            .collect();
        // Prefer the Service whose name resembles the one written
        // (`datastorage` → `data-storage-service`).
        let wanted = letters(&target.service);
        let resembling: Vec<&str> = in_ns
            .iter()
            .map(|s| name(&s.metadata))
            .filter(|n| letters(n).contains(&wanted) || wanted.contains(&letters(n)))
            .collect();
        let candidates = if resembling.is_empty() {
            same_port
        } else {
            resembling
        };
        let fix = match candidates.as_slice() {
            [only] => format!("use {}", rename_service(raw, &target.service, only)),
            _ => format!(
                "point it at one of the Services in {target_ns}: {}",
                in_ns
                    .iter()
                    .map(|s| name(&s.metadata))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Some((
            format!(
                "{raw} names Service \"{}\" in namespace {target_ns}, which does not exist",
                target.service
            ),
            fix,
        ));
    };
    let service_name = format!("{target_ns}/{}", name(&service.metadata));
    if let Some(domain) = &target.domain {
        if *domain != context.cluster_domain {
            return Some((
                format!(
                    "{raw} uses cluster domain {domain}, but the cluster's is {}: the name does not resolve",
                    context.cluster_domain
                ),
                format!(
                    "use {}.{target_ns}.svc.{}",
                    name(&service.metadata),
                    context.cluster_domain
                ),
            ));
        }
    }
    let api_port = named_port(service, "api");
    let Some(port) = target.port else {
        return None; // a host whose port is configured elsewhere
    };
    let port_name = ports_named(service)
        .into_iter()
        .find(|(_, p)| *p == i32::from(port))
        .map(|(n, _)| n);
    match port_name {
        None => {
            let how = if target.explicit_port {
                format!("uses port {port}")
            } else {
                format!("has no port, so it uses the scheme's default {port}")
            };
            let fix = match api_port {
                Some(api) => format!(
                    "write the API port: {}",
                    with_port(raw, port, api, target.explicit_port)
                ),
                None => "use one of the Service's ports".into(),
            };
            Some((
                format!(
                    "{raw} {how}, but Service {service_name} exposes {:?}",
                    ports(service)
                ),
                fix,
            ))
        }
        Some(port_name) if found.api && NON_API_PORTS.contains(&port_name.as_str()) => {
            let fix = match api_port {
                Some(api) => format!(
                    "use the api port: {}",
                    with_port(raw, port, api, target.explicit_port)
                ),
                None => "use the Service's API port".into(),
            };
            Some((
                format!(
                    "{raw} reaches port {port}, Service {service_name}'s {port_name} port, where its API is meant"
                ),
                fix,
            ))
        }
        Some(_) => None,
    }
}

/// `raw` with the Service name replaced by `new`, in any spelling.
fn rename_service(raw: &str, old: &str, new: &str) -> String {
    let mut out = raw.to_owned();
    for (from, to) in [
        (format!("//{old}."), format!("//{new}.")),
        (format!("//{old}:"), format!("//{new}:")),
        (format!("//{old}/"), format!("//{new}/")),
    ] {
        if out.contains(&from) {
            return out.replacen(&from, &to, 1);
        }
    }
    if out == old || out.ends_with(&format!("//{old}")) {
        out.truncate(out.len() - old.len());
        out.push_str(new);
        return out;
    }
    out.replacen(&format!("{old}."), &format!("{new}."), 1)
}

/// `raw` with `port` (written or implied) replaced by `api`.
fn with_port(raw: &str, port: u16, api: i32, explicit: bool) -> String {
    if explicit {
        return raw.replacen(&format!(":{port}"), &format!(":{api}"), 1);
    }
    let mut parsed = url::Url::parse(raw).ok();
    let set = parsed
        .as_mut()
        .is_some_and(|url| url.set_port(u16::try_from(api).ok()).is_ok());
    match parsed.filter(|_| set) {
        Some(url) => {
            let text = url.to_string();
            // `Url` adds a `/` path; keep the address as written.
            if raw.ends_with('/') {
                text
            } else {
                text.trim_end_matches('/').to_owned()
            }
        }
        None => format!("{raw}:{api}"),
    }
}

fn letters(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).collect()
}

fn ports(service: &Service) -> Vec<i32> {
    ports_named(service).into_iter().map(|(_, p)| p).collect()
}

fn ports_named(service: &Service) -> Vec<(String, i32)> {
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| (p.name.clone().unwrap_or_default(), p.port))
        .collect()
}

fn named_port(service: &Service, wanted: &str) -> Option<i32> {
    ports_named(service)
        .into_iter()
        .find(|(n, _)| n == wanted)
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaces() -> BTreeSet<String> {
        ["kubernaut-system".to_owned()].into()
    }

    #[test]
    fn urls_are_found_in_yaml_text() {
        let text = "audit:\n  data_storage_url: http://a.b.svc.cluster.local:8080\nother: \"https://x.y:1/p\"\n";
        assert_eq!(
            urls_in(text),
            ["http://a.b.svc.cluster.local:8080", "https://x.y:1/p"]
        );
    }

    #[test]
    fn every_cluster_spelling_is_recognised() {
        let ns = namespaces();
        let cases = [
            (
                "http://data-storage-service.kubernaut-system.svc.cluster.local:8080",
                Some("kubernaut-system"),
                Some(8080),
                Some("cluster.local"),
            ),
            (
                "http://data-storage-service.kubernaut-system.svc.cluster.local.:8080",
                Some("kubernaut-system"),
                Some(8080),
                Some("cluster.local"),
            ),
            (
                "http://data-storage-service.kubernaut-system.svc:8080",
                Some("kubernaut-system"),
                Some(8080),
                None,
            ),
            (
                "http://data-storage-service.kubernaut-system:8080",
                Some("kubernaut-system"),
                Some(8080),
                None,
            ),
            ("http://data-storage-service:8080", None, Some(8080), None),
            ("http://data-storage-service", None, Some(80), None),
            (
                "https://data-storage-service.kubernaut-system.svc.corp.example",
                Some("kubernaut-system"),
                Some(443),
                Some("corp.example"),
            ),
        ];
        for (raw, namespace, port, domain) in cases {
            let t = cluster_target(raw, &ns).unwrap_or_else(|| panic!("{raw}"));
            assert_eq!(t.service, "data-storage-service", "{raw}");
            assert_eq!(t.namespace.as_deref(), namespace, "{raw}");
            assert_eq!(t.port, port, "{raw}");
            assert_eq!(t.domain.as_deref(), domain, "{raw}");
        }
        for outside in [
            "https://example.com/x",
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "https://api.github.com",
        ] {
            assert!(cluster_target(outside, &ns).is_none(), "{outside}");
        }
    }

    #[test]
    fn fixes_keep_the_spelling_written() {
        assert_eq!(
            rename_service(
                "http://datastorage.kubernaut-system:8080",
                "datastorage",
                "data-storage-service"
            ),
            "http://data-storage-service.kubernaut-system:8080"
        );
        assert_eq!(
            rename_service("datastorage.kubernaut-system.svc", "datastorage", "x"),
            "x.kubernaut-system.svc"
        );
        assert_eq!(
            with_port("http://a.b.svc.cluster.local", 80, 8080, false),
            "http://a.b.svc.cluster.local:8080"
        );
        assert_eq!(
            with_port("http://a:9090", 9090, 8080, true),
            "http://a:8080"
        );
    }
}
