//! Check 3: every DataStorage caller holds the verbs it needs.
//!
//! A caller is a workload whose ConfigMap or environment holds a URL that
//! points at `data-storage-service`. Its ServiceAccount declares the verbs it
//! needs in the annotation `kubernaut.ai/data-storage-verbs` (default
//! `create`, a writer); the verbs it holds are those its RoleBindings and
//! ClusterRoleBindings grant on `services/data-storage-service`.

use std::collections::BTreeSet;

use audit_sdk::names::{DATA_STORAGE_CLIENT_ROLE, DATA_STORAGE_SERVICE};
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};

use super::objects::{name, ns, Objects, Workload};
use super::urls::{cluster_target, urls_in};
use super::{Check, Finding};

/// Annotation on a ServiceAccount listing the verbs it needs on DataStorage.
pub const VERBS_ANNOTATION: &str = "kubernaut.ai/data-storage-verbs";

pub fn check(objects: &Objects) -> Vec<Finding> {
    let mut findings = Vec::new();
    for w in objects.workloads() {
        let Some(ds_namespace) = calls_data_storage(objects, &w) else {
            continue;
        };
        let sa = w.spec.service_account_name.as_deref().unwrap_or("default");
        let needed = needed_verbs(objects, w.namespace, sa);
        let held = held_verbs(objects, w.namespace, sa, &ds_namespace);
        let missing: Vec<&str> = needed
            .iter()
            .filter(|v| !held.contains(v.as_str()) && !held.contains("*"))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            continue;
        }
        let fix = if held.is_empty() {
            format!(
                "add a RoleBinding in namespace {ds_namespace} binding ServiceAccount {}/{sa} to ClusterRole {DATA_STORAGE_CLIENT_ROLE}",
                w.namespace
            )
        } else {
            format!(
                "grant {} on services/{DATA_STORAGE_SERVICE} (bind ServiceAccount {}/{sa} to ClusterRole {DATA_STORAGE_CLIENT_ROLE}, or add the verbs to the role it is bound to)",
                missing.join(", "),
                w.namespace
            )
        };
        findings.push(Finding {
            check: Check::Rbac,
            object: w.describe(),
            field: format!("spec.template.spec.serviceAccountName ({sa})"),
            problem: format!(
                "calls DataStorage and needs {} on services/{DATA_STORAGE_SERVICE}, but ServiceAccount {}/{sa} holds {}",
                needed.iter().cloned().collect::<Vec<_>>().join(", "),
                w.namespace,
                if held.is_empty() { "no verbs there".to_owned() } else { held.iter().cloned().collect::<Vec<_>>().join(", ") }
            ),
            fix,
        });
    }
    findings
}

/// The namespace of the DataStorage Service this workload calls, if it does.
fn calls_data_storage(objects: &Objects, w: &Workload<'_>) -> Option<String> {
    let mut texts: Vec<String> = Vec::new();
    for c in w
        .spec
        .init_containers
        .iter()
        .flatten()
        .chain(&w.spec.containers)
    {
        texts.extend(c.env.iter().flatten().filter_map(|e| e.value.clone()));
        for from in c.env_from.iter().flatten() {
            if let Some(cm) = from
                .config_map_ref
                .as_ref()
                .and_then(|r| objects.config_map(w.namespace, &r.name))
            {
                texts.extend(cm.data.iter().flatten().map(|(_, v)| v.clone()));
            }
        }
    }
    for volume in w.spec.volumes.iter().flatten() {
        if let Some(cm) = volume
            .config_map
            .as_ref()
            .and_then(|r| objects.config_map(w.namespace, &r.name))
        {
            texts.extend(cm.data.iter().flatten().map(|(_, v)| v.clone()));
        }
    }
    texts.iter().flat_map(|t| urls_in(t)).find_map(|u| {
        let target = cluster_target(&u)?;
        (target.service == DATA_STORAGE_SERVICE)
            .then(|| target.namespace.unwrap_or_else(|| w.namespace.to_owned()))
    })
}

fn needed_verbs(objects: &Objects, namespace: &str, sa: &str) -> BTreeSet<String> {
    let declared = objects
        .service_accounts
        .iter()
        .find(|s| ns(&s.metadata) == namespace && name(&s.metadata) == sa)
        .and_then(|s| s.metadata.annotations.as_ref())
        .and_then(|a| a.get(VERBS_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| "create".to_owned());
    declared
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

fn is_subject(subjects: Option<&Vec<Subject>>, namespace: &str, sa: &str) -> bool {
    subjects.into_iter().flatten().any(|s| {
        s.kind == "ServiceAccount"
            && s.name == sa
            && s.namespace.as_deref().unwrap_or(namespace) == namespace
    })
}

/// Verbs `sa` holds on `services/data-storage-service` in `ds_namespace`.
fn held_verbs(
    objects: &Objects,
    namespace: &str,
    sa: &str,
    ds_namespace: &str,
) -> BTreeSet<String> {
    let mut verbs = BTreeSet::new();
    let mut grant = |role_ref: &RoleRef, binding_ns: Option<&str>| {
        let rules: Option<&Vec<PolicyRule>> = match (role_ref.kind.as_str(), binding_ns) {
            ("ClusterRole", _) => objects
                .cluster_roles
                .iter()
                .find(|r| name(&r.metadata) == role_ref.name)
                .and_then(|r| r.rules.as_ref()),
            ("Role", Some(bns)) => objects
                .roles
                .iter()
                .find(|r| ns(&r.metadata) == bns && name(&r.metadata) == role_ref.name)
                .and_then(|r| r.rules.as_ref()),
            _ => None,
        };
        for rule in rules.into_iter().flatten() {
            let core = rule
                .api_groups
                .iter()
                .flatten()
                .any(|g| g.is_empty() || g == "*");
            let services = rule
                .resources
                .iter()
                .flatten()
                .any(|r| r == "services" || r == "*");
            let named = rule.resource_names.as_ref().is_none_or(|names| {
                names.is_empty() || names.iter().any(|n| n == DATA_STORAGE_SERVICE)
            });
            if core && services && named {
                verbs.extend(rule.verbs.iter().cloned());
            }
        }
    };
    for b in &objects.role_bindings {
        if ns(&b.metadata) == ds_namespace && is_subject(b.subjects.as_ref(), namespace, sa) {
            grant(&b.role_ref, Some(ds_namespace));
        }
    }
    for b in &objects.cluster_role_bindings {
        if is_subject(b.subjects.as_ref(), namespace, sa) {
            grant(&b.role_ref, None);
        }
    }
    verbs
}
