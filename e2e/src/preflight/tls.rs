//! Check 8: callers speak the scheme DataStorage serves, and a TLS-enabled
//! DataStorage has its certificate mounted.
//!
//! The reference chart wires DataStorage as `https://…:8080`. With TLS on
//! (`server.tls.cert_file`/`key_file`, from the mounted ConfigMap or
//! `DATASTORAGE_SERVER__TLS__*` variables, as the service reads them):
//!
//! - each file must lie in a mounted Secret volume, or the Pod crash-loops on
//!   a missing file;
//! - every URL naming `data-storage-service` must be `https://` (a plain
//!   `http://` caller fails every handshake and spools forever), and a Gateway
//!   reaching it over https must trust a CA file from a mounted ConfigMap or
//!   Secret (`audit.ca_file`);
//!
//! and with TLS off, an `https://` URL is a finding too.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Container;

use super::configs::effective_config;
use super::objects::{Objects, Workload};
use super::urls::{cluster_target, url_sources, urls_in};
use super::{Check, Finding};

/// Whether `path` is inside a volume mount of `c` whose volume is a Secret (or,
/// with `config_maps`, a ConfigMap), counting projected sources.
fn mounted_from(w: &Workload<'_>, c: &Container, path: &Path, config_maps: bool) -> bool {
    c.volume_mounts.iter().flatten().any(|m| {
        let inside = path.starts_with(&m.mount_path);
        let volume = w.spec.volumes.iter().flatten().find(|v| v.name == m.name);
        let kind_ok = volume.is_some_and(|v| {
            v.secret.is_some()
                || (config_maps && v.config_map.is_some())
                || v.projected.as_ref().is_some_and(|p| {
                    p.sources
                        .iter()
                        .flatten()
                        .any(|s| s.secret.is_some() || (config_maps && s.config_map.is_some()))
                })
        });
        inside && kind_ok
    })
}

fn image_is(c: &Container, short: &str) -> bool {
    c.image
        .as_deref()
        .and_then(|i| i.rsplit('/').next())
        .and_then(|i| i.split([':', '@']).next())
        == Some(short)
}

pub fn check(objects: &Objects) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Namespace → the scheme DataStorage serves there.
    let mut schemes: BTreeMap<String, &'static str> = BTreeMap::new();
    for w in objects.workloads() {
        for c in w
            .spec
            .containers
            .iter()
            .filter(|c| image_is(c, "datastorage"))
        {
            let Some(config) = effective_config::<datastorage::config::Config>(
                objects,
                &w,
                c,
                datastorage::config::ENV_PREFIX,
            ) else {
                continue; // the configs check names an unreadable configuration
            };
            let tls = &config.server.tls;
            schemes.insert(w.namespace.to_owned(), tls.scheme());
            for (key, file) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
                let Some(file) = file else { continue };
                if !mounted_from(&w, c, file, false) {
                    findings.push(Finding {
                        check: Check::Tls,
                        object: w.describe(),
                        field: format!("containers[{}] server.tls.{key}", c.name),
                        problem: format!(
                            "{} is in no mounted Secret: DataStorage refuses to start without it",
                            file.display()
                        ),
                        fix: format!(
                            "mount the Secret datastorage-tls (type kubernetes.io/tls) at {}",
                            file.parent()
                                .map_or("/".into(), |p| p.display().to_string())
                        ),
                    });
                }
            }
        }
    }
    let namespaces = objects.namespaces();
    for source in url_sources(objects) {
        for raw in urls_in(&source.text) {
            let Some(target) = cluster_target(&raw, &namespaces) else {
                continue;
            };
            let target_ns = target.namespace.clone().unwrap_or(source.namespace.clone());
            if target.service != audit_sdk::names::DATA_STORAGE_SERVICE
                || target.port != Some(audit_sdk::names::API_PORT)
            {
                continue;
            }
            let Some(&served) = schemes.get(&target_ns) else {
                continue;
            };
            let written = raw.split("://").next().unwrap_or("");
            if written == served {
                continue;
            }
            let fixed = format!("{served}{}", &raw[written.len()..]);
            let (problem, fix) = if served == "https" {
                (
                    format!("{raw} is plain HTTP, but DataStorage serves TLS there: every request fails its handshake"),
                    format!("use {fixed} and trust the CA of datastorage-tls (audit.ca_file)"),
                )
            } else {
                (
                    format!("{raw} asks for TLS, but DataStorage serves plain HTTP there (no server.tls)"),
                    format!("use {fixed}, or enable server.tls on DataStorage"),
                )
            };
            findings.push(Finding {
                check: Check::Tls,
                object: source.object.clone(),
                field: source.field.clone(),
                problem,
                fix,
            });
        }
    }
    // A Gateway reaching DataStorage over https trusts a mounted CA file.
    for w in objects.workloads() {
        for c in w.spec.containers.iter().filter(|c| image_is(c, "gateway")) {
            let Some(config) = effective_config::<gateway::config::Config>(
                objects,
                &w,
                c,
                gateway::config::ENV_PREFIX,
            ) else {
                continue;
            };
            if !config.audit.data_storage_url.starts_with("https://") {
                continue;
            }
            let field = format!("containers[{}] audit.ca_file", c.name);
            let problem = match &config.audit.ca_file {
                None => Some("is not set: the cluster's private CA that signed DataStorage's certificate is not trusted".to_owned()),
                Some(file) if !mounted_from(&w, c, file, true) => Some(format!(
                    "{} is in no mounted ConfigMap or Secret",
                    file.display()
                )),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                findings.push(Finding {
                    check: Check::Tls,
                    object: w.describe(),
                    field,
                    problem,
                    fix: "mount ca.crt of the Secret datastorage-tls and point audit.ca_file at it"
                        .into(),
                });
            }
        }
    }
    // One finding per address, even when a text repeats it.
    findings.dedup();
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_match_by_their_short_name() {
        let c = |image: &str| Container {
            image: Some(image.into()),
            ..Container::default()
        };
        assert!(image_is(
            &c("registry.example/kubernaut/datastorage:0.1"),
            "datastorage"
        ));
        assert!(image_is(&c("datastorage@sha256:ab"), "datastorage"));
        assert!(!image_is(&c("kubernaut/gateway:1"), "datastorage"));
    }
}
