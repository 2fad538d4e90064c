//! Check 3: every DataStorage caller holds the verbs it needs.
//!
//! A caller is a workload whose ConfigMap or environment holds a URL that
//! points at `data-storage-service`. Its ServiceAccount declares the verbs it
//! needs in the annotation `kubernaut.ai/data-storage-verbs` (default
//! `create`, a writer); the verbs it holds are those its RoleBindings and
//! ClusterRoleBindings grant on `services/data-storage-service`. A
//! ServiceAccount carrying the annotation without a workload (a test caller
//! that gets its token from the TokenRequest API) is checked the same way.

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
    let mut checked: BTreeSet<(String, String)> = BTreeSet::new();
    for w in objects.workloads() {
        let Some(ds_namespace) = calls_data_storage(objects, &w) else {
            continue;
        };
        let sa = w.spec.service_account_name.as_deref().unwrap_or("default");
        checked.insert((w.namespace.to_owned(), sa.to_owned()));
        findings.extend(missing_verbs(
            objects,
            w.describe(),
            format!("spec.template.spec.serviceAccountName ({sa})"),
            "calls DataStorage and needs",
            w.namespace,
            sa,
            &ds_namespace,
        ));
    }
    // ServiceAccounts that declare DataStorage verbs but that no workload of
    // the overlay runs as (test callers using TokenRequest tokens, clients
    // outside the cluster) are held to their declaration too.
    let ds_namespace = objects
        .services
        .iter()
        .find(|s| name(&s.metadata) == DATA_STORAGE_SERVICE)
        .map(|s| ns(&s.metadata));
    for account in &objects.service_accounts {
        let (namespace, sa) = (ns(&account.metadata), name(&account.metadata));
        let declares = account
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(VERBS_ANNOTATION));
        if !declares || checked.contains(&(namespace.to_owned(), sa.to_owned())) {
            continue;
        }
        findings.extend(missing_verbs(
            objects,
            format!("ServiceAccount {namespace}/{sa}"),
            format!("metadata.annotations[{VERBS_ANNOTATION}]"),
            "declares that it needs",
            namespace,
            sa,
            ds_namespace.unwrap_or(namespace),
        ));
    }
    findings
}

/// A finding when ServiceAccount `namespace/sa` lacks a verb it needs on
/// DataStorage in `ds_namespace`.
fn missing_verbs(
    objects: &Objects,
    object: String,
    field: String,
    why: &str,
    namespace: &str,
    sa: &str,
    ds_namespace: &str,
) -> Option<Finding> {
    let needed = needed_verbs(objects, namespace, sa);
    let held = held_verbs(objects, namespace, sa, ds_namespace);
    let missing: Vec<&str> = needed
        .iter()
        .filter(|v| !held.contains(v.as_str()) && !held.contains("*"))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return None;
    }
    let fix = if held.is_empty() {
        format!(
            "add a RoleBinding in namespace {ds_namespace} binding ServiceAccount {namespace}/{sa} to ClusterRole {DATA_STORAGE_CLIENT_ROLE}"
        )
    } else {
        format!(
            "grant {} on services/{DATA_STORAGE_SERVICE} (bind ServiceAccount {namespace}/{sa} to ClusterRole {DATA_STORAGE_CLIENT_ROLE}, or add the verbs to the role it is bound to)",
            missing.join(", ")
        )
    };
    Some(Finding {
        check: Check::Rbac,
        object,
        field,
        problem: format!(
            "{why} {} on services/{DATA_STORAGE_SERVICE}, but ServiceAccount {namespace}/{sa} holds {}",
            needed.iter().cloned().collect::<Vec<_>>().join(", "),
            if held.is_empty() { "no verbs there".to_owned() } else { held.iter().cloned().collect::<Vec<_>>().join(", ") }
        ),
        fix,
    })
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
    let namespaces = objects.namespaces();
    texts.iter().flat_map(|t| urls_in(t)).find_map(|u| {
        let target = cluster_target(&u, &namespaces)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: data-storage-service, namespace: kubernaut-system}
spec: {ports: [{port: 8080}]}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: e2e-reader
  namespace: kubernaut-system
  annotations: {kubernaut.ai/data-storage-verbs: "list,get"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
  - {apiGroups: [""], resources: [services], resourceNames: [data-storage-service], verbs: [ROLE_VERBS]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: e2e-reader, namespace: kubernaut-system}
subjects: [{kind: ServiceAccount, name: e2e-reader, namespace: kubernaut-system}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
"#;

    fn findings(role_verbs: &str) -> Vec<Finding> {
        check(&Objects::parse(&CLIENT.replace("ROLE_VERBS", role_verbs)).unwrap())
    }

    #[test]
    fn a_service_account_without_a_workload_is_held_to_its_annotation() {
        assert_eq!(findings("list, get"), []);
        let f = findings("list");
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].object, "ServiceAccount kubernaut-system/e2e-reader");
        assert_eq!(
            f[0].field,
            "metadata.annotations[kubernaut.ai/data-storage-verbs]"
        );
        assert!(
            f[0].problem.contains("needs get, list") && f[0].problem.contains("holds list"),
            "{}",
            f[0]
        );
        assert!(f[0].fix.contains("grant get"), "{}", f[0]);
    }
}
