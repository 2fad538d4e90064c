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

/// The configuration container `c` of `w` runs with, as the service layers it:
/// defaults, then its mounted `*.yaml` ConfigMap keys, then its literal
/// environment variables named `prefix…` (`__` nests keys). `None` when
/// that is not a configuration the service accepts (the configs check says why).
pub fn effective_config<T: Default + Serialize + DeserializeOwned>(
    objects: &Objects,
    w: &super::objects::Workload<'_>,
    c: &k8s_openapi::api::core::v1::Container,
    prefix: &str,
) -> Option<T> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    for text in mounted_yaml(objects, w, c) {
        figment = figment.merge(Yaml::string(text));
    }
    let mut env = serde_yaml::Mapping::new();
    for var in c.env.iter().flatten() {
        let (Some(key), Some(value)) = (var.name.strip_prefix(prefix), &var.value) else {
            continue;
        };
        let path: Vec<String> = key.split("__").map(str::to_lowercase).collect();
        // Values read as the environment provider reads them (`true`, `5s`, `8080`).
        let value = serde_yaml::from_str(value)
            .unwrap_or_else(|_| serde_yaml::Value::String(value.clone()));
        insert(&mut env, &path, value);
    }
    if !env.is_empty() {
        let text = serde_yaml::to_string(&env).ok()?;
        figment = figment.merge(Yaml::string(&text));
    }
    figment.extract().ok()
}

/// Sets `path` in a nested mapping.
fn insert(map: &mut serde_yaml::Mapping, path: &[String], value: serde_yaml::Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = serde_yaml::Value::String(first.clone());
    if rest.is_empty() {
        map.insert(key, value);
        return;
    }
    let entry = map
        .entry(key)
        .or_insert_with(|| serde_yaml::Value::Mapping(serde_yaml::Mapping::new()));
    if !entry.is_mapping() {
        *entry = serde_yaml::Value::Mapping(serde_yaml::Mapping::new());
    }
    if let serde_yaml::Value::Mapping(inner) = entry {
        insert(inner, rest, value);
    }
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
