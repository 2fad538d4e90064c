//! Check 7: every service's ConfigMap is a configuration the service accepts.
//!
//! Both services reject unknown keys at startup; this finds the typo (or the
//! missing backend) before a Pod crash-loops on it, by parsing each mounted
//! `*.yaml` key of a container's ConfigMap with that service's own config type.

use figment::providers::{Format, Serialized, Yaml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::objects::{name, Objects};
use super::{Check, Finding};

/// Parses `yaml` over the defaults of `T`, as the service does at startup.
fn accepts<T: Default + Serialize + DeserializeOwned>(yaml: &str) -> Result<(), String> {
    Figment::from(Serialized::defaults(T::default()))
        .merge(Yaml::string(yaml))
        .extract::<T>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The DataStorage configuration `text` yields (defaults, then the file).
pub fn datastorage_config(text: &str) -> Option<datastorage::config::Config> {
    Figment::from(Serialized::defaults(datastorage::config::Config::default()))
        .merge(Yaml::string(text))
        .extract()
        .ok()
}

/// The `*.yaml` texts of the ConfigMaps mounted into container `c` of `w`.
pub fn mounted_yaml<'a>(
    objects: &'a Objects,
    w: &super::objects::Workload<'a>,
    c: &k8s_openapi::api::core::v1::Container,
) -> Vec<&'a str> {
    let mut texts = Vec::new();
    for volume in w.spec.volumes.iter().flatten() {
        let Some(cm_ref) = &volume.config_map else {
            continue;
        };
        let mounted = c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == volume.name);
        if let Some(cm) = objects
            .config_map(w.namespace, &cm_ref.name)
            .filter(|_| mounted)
        {
            texts.extend(
                cm.data
                    .iter()
                    .flatten()
                    .filter(|(k, _)| k.ends_with(".yaml"))
                    .map(|(_, v)| v.as_str()),
            );
        }
    }
    texts
}

/// Checks one configuration text; `Err` holds the service's own complaint.
type Validator = fn(&str) -> Result<(), String>;

/// The config type of a container image, by the image's short name.
fn validator(image: &str) -> Option<Validator> {
    let short = image.rsplit('/').next()?.split([':', '@']).next()?;
    match short {
        "datastorage" => Some(accepts::<datastorage::config::Config>),
        "gateway" => Some(accepts::<gateway::config::Config>),
        _ => None,
    }
}

pub fn check(objects: &Objects) -> Vec<Finding> {
    let mut findings = Vec::new();
    for w in objects.workloads() {
        let containers = w
            .spec
            .init_containers
            .iter()
            .flatten()
            .chain(&w.spec.containers);
        for c in containers {
            let Some(validate) = c.image.as_deref().and_then(validator) else {
                continue;
            };
            for volume in w.spec.volumes.iter().flatten() {
                let Some(cm_ref) = &volume.config_map else {
                    continue;
                };
                let mounted = c
                    .volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.name == volume.name);
                let Some(cm) = objects
                    .config_map(w.namespace, &cm_ref.name)
                    .filter(|_| mounted)
                else {
                    continue;
                };
                for (key, text) in cm
                    .data
                    .iter()
                    .flatten()
                    .filter(|(k, _)| k.ends_with(".yaml"))
                {
                    if let Err(problem) = validate(text) {
                        findings.push(Finding {
                            check: Check::Config,
                            object: format!("ConfigMap {}/{}", w.namespace, name(&cm.metadata)),
                            field: format!(
                                "data[{key}] (read by {} container {})",
                                w.describe(),
                                c.name
                            ),
                            problem: format!("the service would refuse to start: {problem}"),
                            fix: "fix the key or value; see the README's configuration reference"
                                .into(),
                        });
                    }
                }
            }
        }
    }
    findings
}
