//! Changing the stack: scaling, killing, re-pointing the Gateway, reading logs.
//!
//! Only the API calls live here; the waits that make each change observable
//! before a method returns are in [`super::wait`].

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use super::stack::{PodSet, WorkloadKind};

/// The Gateway's environment override of `audit.data_storage_url`: the
/// Gateway layers `GATEWAY_`-prefixed variables over its file, with `__`
/// between key levels.
pub fn data_storage_url_env() -> String {
    format!("{}AUDIT__DATA_STORAGE_URL", gateway::config::ENV_PREFIX)
}

/// Pod template annotation whose change forces a rollout (what `kubectl
/// rollout restart` sets).
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// Sets the replica count through the scale subresource.
pub async fn scale(client: &Client, set: &PodSet, replicas: i32) -> anyhow::Result<()> {
    let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
    let params = PatchParams::default();
    let result = match set.kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), &set.namespace)
                .patch_scale(&set.name, &params, &patch)
                .await
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), &set.namespace)
                .patch_scale(&set.name, &params, &patch)
                .await
        }
    };
    result
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("scaling {} to {replicas}: {e}", set.describe()))
}

/// Deletes every Pod of `set` with grace period 0: the kubelet kills the
/// containers (SIGKILL) without running their shutdown.
pub async fn force_delete_pods(client: &Client, set: &PodSet) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &set.namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete_collection(&params, &ListParams::default().labels(&set.selector))
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("deleting the Pods of {}: {e}", set.describe()))
}

/// `(node, runtime container ID)` of the main container of every running Pod
/// of `set`: what [`super::plan::kill_container`] stops.
pub async fn running_containers(
    client: &Client,
    set: &PodSet,
) -> anyhow::Result<Vec<(String, String)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &set.namespace);
    let list = pods
        .list(&ListParams::default().labels(&set.selector))
        .await?;
    Ok(list
        .items
        .iter()
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            let status = p
                .status
                .as_ref()?
                .container_statuses
                .iter()
                .flatten()
                .find(|c| c.name == set.container)?;
            let id = super::plan::runtime_container_id(status.container_id.as_deref()?)?;
            Some((node, id.to_owned()))
        })
        .collect())
}

/// UIDs of the Pods of `set` that exist now.
pub async fn pod_uids(client: &Client, set: &PodSet) -> anyhow::Result<BTreeSet<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &set.namespace);
    let list = pods
        .list(&ListParams::default().labels(&set.selector))
        .await?;
    Ok(list
        .items
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect())
}

/// A strategic merge patch that sets (`Some`) or removes (`None`) the
/// Gateway's `data_storage_url` override, makes sure the Deployment runs
/// `replicas` Pods, and stamps `restarted_at` on the Pod template so the
/// Pods are replaced even when the environment does not change.
pub fn gateway_url_patch(set: &PodSet, url: Option<&str>, restarted_at: &str) -> Value {
    let env = match url {
        Some(url) => json!({ "name": data_storage_url_env(), "value": url }),
        None => json!({ "name": data_storage_url_env(), "$patch": "delete" }),
    };
    json!({
        "spec": {
            "replicas": set.replicas,
            "template": {
                "metadata": { "annotations": { RESTARTED_AT_ANNOTATION: restarted_at } },
                "spec": { "containers": [ { "name": set.container, "env": [ env ] } ] }
            }
        }
    })
}

/// Applies `patch` to the workload of `set`; returns the new generation.
pub async fn patch_workload(client: &Client, set: &PodSet, patch: Value) -> anyhow::Result<i64> {
    let params = PatchParams::default();
    let patch = Patch::Strategic(patch);
    let generation = match set.kind {
        WorkloadKind::Deployment => Api::<Deployment>::namespaced(client.clone(), &set.namespace)
            .patch(&set.name, &params, &patch)
            .await
            .map(|d| d.metadata.generation),
        WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), &set.namespace)
            .patch(&set.name, &params, &patch)
            .await
            .map(|s| s.metadata.generation),
    }
    .map_err(|e| anyhow::anyhow!("patching {}: {e}", set.describe()))?;
    Ok(generation.unwrap_or(0))
}

/// Deletes every Pod of `set` with its grace period (SIGTERM, graceful
/// shutdown). A StatefulSet's rolling update waits for each new Pod to be
/// Ready before replacing the next; a Gateway pointed at a wrong URL on
/// purpose never is, so its Pods are replaced by deleting them (the
/// controller recreates each at the new revision).
pub async fn delete_pods(client: &Client, set: &PodSet) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &set.namespace);
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&set.selector),
    )
    .await
    .map(|_| ())
    .map_err(|e| anyhow::anyhow!("deleting the Pods of {}: {e}", set.describe()))
}

/// The main container's log of every live Pod of `set`, oldest Pod first
/// (the current container instance only: what it logged since it started).
pub async fn logs(client: &Client, set: &PodSet) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &set.namespace);
    let mut live: Vec<Pod> = pods
        .list(&ListParams::default().labels(&set.selector))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    if live.is_empty() {
        anyhow::bail!("{} has no running Pod to read logs from", set.describe());
    }
    live.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    let params = LogParams {
        container: Some(set.container.clone()),
        ..LogParams::default()
    };
    let mut out = String::new();
    for pod in live {
        let name = pod.metadata.name.unwrap_or_default();
        let text = pods
            .logs(&name, &params)
            .await
            .map_err(|e| anyhow::anyhow!("reading the log of Pod {}/{name}: {e}", set.namespace))?;
        out.push_str(&text);
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> PodSet {
        PodSet {
            kind: WorkloadKind::Deployment,
            namespace: "kubernaut-system".into(),
            name: "gateway".into(),
            service: "gateway-service".into(),
            selector: "app.kubernetes.io/name=gateway".into(),
            replicas: 1,
            container: "gateway".into(),
            init_containers: Vec::new(),
        }
    }

    #[test]
    fn the_env_override_matches_the_gateway_config_layering() {
        assert_eq!(data_storage_url_env(), "GATEWAY_AUDIT__DATA_STORAGE_URL");
    }

    #[test]
    fn a_url_is_set_and_none_removes_it_and_both_restart() {
        let set = gateway();
        let p = gateway_url_patch(&set, Some("http://x:8080"), "t1");
        let container = &p["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["name"], "gateway");
        assert_eq!(
            container["env"][0]["name"],
            "GATEWAY_AUDIT__DATA_STORAGE_URL"
        );
        assert_eq!(container["env"][0]["value"], "http://x:8080");
        assert_eq!(
            p["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
            "t1"
        );
        assert_eq!(p["spec"]["replicas"], 1);

        let p = gateway_url_patch(&set, None, "t2");
        let env = &p["spec"]["template"]["spec"]["containers"][0]["env"][0];
        assert_eq!(env["$patch"], "delete");
        assert!(env.get("value").is_none());
        assert_eq!(
            p["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
            "t2"
        );
    }
}
