//! The post-mortem of a failed run: everything needed to tell why, written
//! before the cluster is deleted.
//!
//! Each item is best effort (a cluster that never came up still gets its
//! node logs); whatever could not be collected is listed in `errors.txt`
//! instead of hiding the failure being diagnosed. Everything goes through
//! `kubectl`/`kind` rather than the API client, so it works even when the
//! client could not be built.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use super::plan::{self, Cmd};
use super::runner::Runner;
use super::KindOptions;

/// The label every object of the stack carries (`deploy/base/kustomization.yaml`).
pub const PART_OF_SELECTOR: &str = "app.kubernetes.io/part-of=kubernaut-audit";

/// Namespaced kinds dumped as YAML.
const NAMESPACED_KINDS: &str = "deployments,statefulsets,replicasets,pods,services,endpointslices,configmaps,serviceaccounts,roles,rolebindings,persistentvolumeclaims";

/// Writes under `dir`:
/// - `logs/<pod>.<container>.log` for every container (init containers
///   included), and `….previous.log` for every container that restarted;
/// - `pods.json`, `describe-pods.txt`, `events.txt` (all namespaces, in time
///   order), `objects.yaml` (the namespace) and `cluster-objects.yaml`
///   (the stack's cluster-scoped objects), `persistentvolumes.yaml`;
/// - `kind/`: node, kubelet and container runtime logs (`kind export logs`);
/// - `errors.txt`: what could not be collected.
pub async fn collect(
    runner: &dyn Runner,
    o: &KindOptions,
    namespace: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("logs"))
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let mut errors = Vec::new();
    let kubectl = |args: &[&str]| {
        let mut cmd = plan::kubectl(o, args.iter().copied());
        cmd.quiet = true;
        cmd
    };
    let pods_json = save(
        runner,
        dir,
        "pods.json",
        kubectl(&["get", "pods", "-n", namespace, "-o", "json"]),
        &mut errors,
    )
    .await;
    if let Some(json) = pods_json {
        match pod_items(&json) {
            Ok(pods) => {
                for (pod, container, previous) in log_targets(&pods) {
                    let mut args = vec![
                        "logs",
                        "-n",
                        namespace,
                        pod.as_str(),
                        "-c",
                        container.as_str(),
                    ];
                    if previous {
                        args.push("--previous");
                    }
                    let suffix = if previous { ".previous.log" } else { ".log" };
                    let file = format!("logs/{pod}.{container}{suffix}");
                    save(runner, dir, &file, kubectl(&args), &mut errors).await;
                }
            }
            Err(e) => errors.push(format!("pods.json: not a Pod list: {e}")),
        }
    }
    save(
        runner,
        dir,
        "describe-pods.txt",
        kubectl(&["describe", "pods", "-n", namespace]),
        &mut errors,
    )
    .await;
    save(
        runner,
        dir,
        "events.txt",
        kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"]),
        &mut errors,
    )
    .await;
    save(
        runner,
        dir,
        "objects.yaml",
        kubectl(&["get", NAMESPACED_KINDS, "-n", namespace, "-o", "yaml"]),
        &mut errors,
    )
    .await;
    save(
        runner,
        dir,
        "cluster-objects.yaml",
        kubectl(&[
            "get",
            "clusterroles,clusterrolebindings,customresourcedefinitions",
            "-l",
            PART_OF_SELECTOR,
            "-o",
            "yaml",
        ]),
        &mut errors,
    )
    .await;
    save(
        runner,
        dir,
        "persistentvolumes.yaml",
        kubectl(&["get", "persistentvolumes", "-o", "yaml"]),
        &mut errors,
    )
    .await;
    if let Err(e) = runner.run(&plan::export_logs(o, &dir.join("kind"))).await {
        errors.push(format!("kind/: {e:#}"));
    }
    std::fs::write(dir.join("errors.txt"), errors.join("\n"))?;
    Ok(())
}

/// The Pods of `kubectl get pods -o json` (a `kind: List`, not a `PodList`).
fn pod_items(json: &str) -> anyhow::Result<Vec<Pod>> {
    let list: serde_json::Value = serde_json::from_str(json)?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(items
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()?)
}

/// Runs `cmd` and writes its stdout to `dir/file`; a failure is noted in `errors`.
async fn save(
    runner: &dyn Runner,
    dir: &Path,
    file: &str,
    cmd: Cmd,
    errors: &mut Vec<String>,
) -> Option<String> {
    match runner.run(&cmd).await {
        Ok(out) => {
            if let Err(e) = std::fs::write(dir.join(file), &out) {
                errors.push(format!("{file}: {e}"));
            }
            Some(out)
        }
        Err(e) => {
            errors.push(format!("{file}: {e:#}"));
            None
        }
    }
}

/// `(pod, container, previous)` for every container's current log, plus its
/// previous instance's when it restarted.
fn log_targets(pods: &[Pod]) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let restarts = |container: &str| {
            status
                .iter()
                .flat_map(|s| {
                    s.init_container_statuses
                        .iter()
                        .flatten()
                        .chain(s.container_statuses.iter().flatten())
                })
                .find(|c| c.name == container)
                .map_or(0, |c| c.restart_count)
        };
        let containers = pod.spec.iter().flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        });
        for c in containers {
            out.push((name.clone(), c.name.clone(), false));
            if restarts(&c.name) > 0 {
                out.push((name.clone(), c.name.clone(), true));
            }
        }
    }
    out
}
