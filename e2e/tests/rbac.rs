//! Least privilege in the rendered base (`kubectl kustomize deploy/base`):
//! no cluster-wide write on Leases or RemediationRequests, the owner walk can
//! read Jobs and CronJobs, and every cluster-scoped object carries the
//! project prefix.

use audit_sdk::names;
use e2e::preflight;
use serde::Deserialize;
use serde_json::Value;

const WRITE_VERBS: &[&str] = &[
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "*",
];

fn rendered_base() -> Vec<Value> {
    let root = preflight::repo_root();
    let yaml = preflight::render(&root.join("deploy/base")).unwrap();
    serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

#[test]
fn no_cluster_role_writes_leases_or_remediation_requests() {
    let docs = rendered_base();
    let cluster_roles = of_kind(&docs, "ClusterRole");
    assert!(!cluster_roles.is_empty());
    for role in cluster_roles {
        for rule in role["rules"].as_array().unwrap() {
            let resources = strings(&rule["resources"]);
            let verbs = strings(&rule["verbs"]);
            let writes = verbs.iter().any(|v| WRITE_VERBS.contains(v));
            for guarded in [
                "leases",
                "remediationrequests",
                "remediationrequests/status",
                "*",
            ] {
                assert!(
                    !(writes && resources.contains(&guarded)),
                    "ClusterRole {} grants {verbs:?} on {guarded} cluster-wide",
                    name(role)
                );
            }
        }
    }
}

#[test]
fn the_gateway_writes_its_requests_through_a_role_in_its_namespace() {
    let docs = rendered_base();
    let role = of_kind(&docs, "Role")
        .into_iter()
        .find(|r| name(r) == "gateway")
        .expect("Role gateway");
    assert_eq!(role["metadata"]["namespace"], names::NAMESPACE);
    let grants = |resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            strings(&r["resources"]).contains(&resource) && strings(&r["verbs"]).contains(&verb)
        })
    };
    assert!(grants("remediationrequests", "create"));
    assert!(grants("remediationrequests", "watch"));
    assert!(grants("remediationrequests/status", "patch"));
    let binding = of_kind(&docs, "RoleBinding")
        .into_iter()
        .find(|b| b["roleRef"]["kind"] == "Role" && b["roleRef"]["name"] == "gateway")
        .expect("a RoleBinding of Role gateway");
    assert_eq!(
        binding["subjects"][0]["name"],
        names::GATEWAY_SERVICE_ACCOUNT
    );
}

#[test]
fn the_owner_walk_may_get_jobs_and_cronjobs() {
    let docs = rendered_base();
    let role = of_kind(&docs, "ClusterRole")
        .into_iter()
        .find(|r| name(r) == names::GATEWAY_CLUSTER_ROLE)
        .expect("the Gateway's ClusterRole");
    for (group, resource) in [
        ("", "pods"),
        ("apps", "replicasets"),
        ("apps", "deployments"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    ] {
        let granted = role["rules"].as_array().unwrap().iter().any(|r| {
            strings(&r["apiGroups"]).contains(&group)
                && strings(&r["resources"]).contains(&resource)
                && strings(&r["verbs"]) == ["get"]
        });
        assert!(granted, "get on {group}/{resource}");
    }
    let bound = of_kind(&docs, "ClusterRoleBinding").into_iter().any(|b| {
        b["roleRef"]["name"] == names::GATEWAY_CLUSTER_ROLE
            && b["subjects"][0]["name"] == names::GATEWAY_SERVICE_ACCOUNT
    });
    assert!(bound);
}

#[test]
fn every_cluster_scoped_name_carries_the_prefix_except_the_reference_client_role() {
    let docs = rendered_base();
    let mut checked = 0;
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        for doc in of_kind(&docs, kind) {
            let n = name(doc);
            checked += 1;
            // The reference platform's name, which existing callers' RoleBindings use.
            if kind == "ClusterRole" && n == names::DATA_STORAGE_CLIENT_ROLE {
                continue;
            }
            assert!(
                n.starts_with(names::CLUSTER_SCOPED_PREFIX),
                "{kind} {n} lacks the prefix {}",
                names::CLUSTER_SCOPED_PREFIX
            );
        }
    }
    assert!(checked >= 5, "{checked} cluster-scoped objects");
    assert!(of_kind(&docs, "ClusterRole")
        .iter()
        .any(|r| name(r) == names::DATA_STORAGE_CLIENT_ROLE));
    assert!(of_kind(&docs, "ClusterRole")
        .iter()
        .any(|r| name(r) == names::GATEWAY_SIGNAL_SENDER_ROLE));
}
