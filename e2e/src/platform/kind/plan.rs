//! The command plan: which commands bring the Kind stack up and down, in
//! which order, with which arguments.
//!
//! Pure functions from the options (and what `kind get clusters` said) to a
//! list of steps, so the order and arguments are unit-tested on a machine
//! without Docker or kind; [`super::KindPlatform::up`] only interprets them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::preflight::ImageRefs;

use super::KindOptions;

/// The Kind cluster config, relative to the repository root.
pub const CLUSTER_CONFIG: &str = "deploy/kind/cluster.yaml";
/// The overlay the platform applies, relative to the repository root.
pub const OVERLAY: &str = "deploy/overlays/kind";
/// Image names and tag `make images` builds, relative to the repository root.
pub const IMAGES_ENV: &str = "deploy/images.env";
/// The rendered overlay with content-tagged images, in the artefact directory:
/// what the run applies.
pub const TAGGED_MANIFEST: &str = "rendered-tagged.yaml";
/// How long `kind create cluster` waits for the control plane.
pub const CLUSTER_WAIT: &str = "120s";

/// One command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    /// Working directory (`None`: the current one).
    pub dir: Option<PathBuf>,
    /// Killed and reported as failed past this.
    pub timeout: Option<Duration>,
    /// Stdout is the result (a log, a YAML dump), kept out of `commands.log`.
    pub quiet: bool,
}

impl Cmd {
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            dir: None,
            timeout: None,
            quiet: false,
        }
    }

    fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The arguments as `&str`, for comparisons.
    pub fn argv(&self) -> Vec<&str> {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect()
    }
}

impl fmt::Display for Cmd {
    /// A shell-pasteable line (arguments with spaces or quotes are quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
            if plain {
                write!(f, " {arg}")?;
            } else {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// One step of bringing the stack up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run a command (shown as `label` while it runs).
    Run { label: String, cmd: Cmd },
    /// Wait until these CustomResourceDefinitions are `Established`.
    CrdsEstablished(Vec<String>),
    /// Wait for the stack in dependency order, up to HTTP `/readyz` through
    /// the NodePorts.
    StackReady,
}

/// What to run, and whether the run creates the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpPlan {
    pub steps: Vec<Step>,
    /// `false` when an existing cluster is reused.
    pub creates_cluster: bool,
}

impl UpPlan {
    /// The commands only, in order.
    pub fn commands(&self) -> Vec<&Cmd> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Run { cmd, .. } => Some(cmd),
                _ => None,
            })
            .collect()
    }
}

/// The CRDs of the rendered overlay, applied and established before the rest
/// (so nothing in the overlay races its own types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdManifest {
    /// A file holding only the CRD documents.
    pub path: PathBuf,
    /// Their names (`remediationrequests.kubernaut.ai`).
    pub names: Vec<String>,
}

/// The kubectl context `kind create cluster` writes for `cluster`.
pub fn kind_context(cluster: &str) -> String {
    format!("kind-{cluster}")
}

/// `kind get clusters`: one cluster name a line.
pub fn list_clusters() -> Cmd {
    Cmd::new("kind", ["get", "clusters"]).timeout(Duration::from_secs(60))
}

/// The names `kind get clusters` printed ("No kind clusters found." goes to stderr).
pub fn parse_clusters(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn create_cluster(o: &KindOptions) -> Cmd {
    Cmd::new(
        "kind",
        [
            "create".to_owned(),
            "cluster".to_owned(),
            "--name".to_owned(),
            o.cluster_name.clone(),
            "--config".to_owned(),
            path_arg(&o.repo_root.join(CLUSTER_CONFIG)),
            "--wait".to_owned(),
            CLUSTER_WAIT.to_owned(),
        ],
    )
    .timeout(o.timeouts.command)
}

/// `make images IMAGE_TAG=<tag>` in the repository root: builds every image
/// of `deploy/images.env` under `tag`.
pub fn build_images(o: &KindOptions, tag: &str) -> Cmd {
    Cmd::new(
        "make",
        [
            "-C".to_owned(),
            path_arg(&o.repo_root),
            "images".to_owned(),
            format!("IMAGE_TAG={tag}"),
        ],
    )
    .timeout(o.timeouts.images)
}

/// A tag naming the content of the tree the images are built from:
/// `e2e-` and 16 hex digits of a SHA-256 over every file's path and bytes
/// (`target/` and hidden entries left out). A reused cluster whose Pods run
/// `IfNotPresent` images then always gets new references when the code
/// changed, so its Pods are replaced and run this tree.
pub fn content_tag(root: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || (dir == root && name == "target") {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap_or(&file);
        hash.update(relative.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&file)?);
        hash.update([0]);
    }
    let digest = hash.finalize();
    Ok(format!("e2e-{}", hex::encode(&digest[..8])))
}

/// `kind load docker-image <image> --name <cluster>`.
pub fn load_image(o: &KindOptions, image: &str) -> Cmd {
    Cmd::new(
        "kind",
        ["load", "docker-image", image, "--name", &o.cluster_name],
    )
    .timeout(o.timeouts.command)
}

/// `kubectl --context kind-<cluster> <args>`.
pub fn kubectl<I, S>(o: &KindOptions, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut all = vec!["--context".to_owned(), kind_context(&o.cluster_name)];
    all.extend(args.into_iter().map(Into::into));
    Cmd::new("kubectl", all).timeout(o.timeouts.command)
}

pub fn apply_file(o: &KindOptions, file: &Path) -> Cmd {
    kubectl(o, ["apply".to_owned(), "-f".to_owned(), path_arg(file)])
}

/// `kubectl --context kind-<cluster> apply -k deploy/overlays/kind`.
pub fn apply_overlay(o: &KindOptions) -> Cmd {
    kubectl(
        o,
        [
            "apply".to_owned(),
            "-k".to_owned(),
            path_arg(&o.repo_root.join(OVERLAY)),
        ],
    )
}

pub fn delete_cluster(o: &KindOptions) -> Cmd {
    Cmd::new("kind", ["delete", "cluster", "--name", &o.cluster_name]).timeout(o.timeouts.command)
}

/// `kind export logs <dir> --name <cluster>`: node, kubelet and container runtime logs.
pub fn export_logs(o: &KindOptions, dir: &Path) -> Cmd {
    Cmd::new(
        "kind",
        [
            "export".to_owned(),
            "logs".to_owned(),
            path_arg(dir),
            "--name".to_owned(),
            o.cluster_name.clone(),
        ],
    )
    .timeout(o.timeouts.command)
}

/// Kills a container for real, on the Kind node that runs it:
/// `docker exec <node> crictl stop --timeout 0 <id>` (SIGKILL at once, no
/// SIGTERM, no grace period). Deleting a Pod with grace period 0 is not that:
/// the kubelet still sends SIGTERM and waits (kubernetes/kubernetes#120449).
pub fn kill_container(o: &KindOptions, node: &str, container_id: &str) -> Cmd {
    Cmd::new(
        "docker",
        [
            "exec",
            node,
            "crictl",
            "stop",
            "--timeout",
            "0",
            container_id,
        ],
    )
    .timeout(o.timeouts.command)
}

/// The runtime's ID in a Pod's `containerStatuses[].containerID`
/// (`containerd://<id>`), as `crictl` takes it.
pub fn runtime_container_id(status_id: &str) -> Option<&str> {
    let (_, id) = status_id.split_once("://")?;
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric())).then_some(id)
}

/// What `kind delete cluster` would say when the cluster must not be replaced.
fn cluster_exists_error(o: &KindOptions) -> anyhow::Error {
    let name = &o.cluster_name;
    anyhow::anyhow!(
        "a kind cluster named {name} already exists, and replacing it is not this run's call: \
         delete it with `kind delete cluster --name {name}`, or reuse it with REUSE_CLUSTER=1 \
         (add KEEP_CLUSTER=1 to keep it after the run)"
    )
}

/// The steps that bring the stack up, given the clusters that already exist.
///
/// - An existing cluster of that name is an error unless `reuse_cluster`;
///   when reused, creation is skipped (with `reuse_cluster` and no such
///   cluster, it is created).
/// - Images are always built and loaded under `images.tag` (a
///   [`content_tag`]), and the overlay is applied as rendered with those
///   references ([`TAGGED_MANIFEST`]), so a reused cluster runs this tree's
///   code.
/// - CRDs (if the overlay has any) are applied and waited for first.
pub fn up_plan(
    o: &KindOptions,
    existing_clusters: &[String],
    images: &ImageRefs,
    crds: Option<&CrdManifest>,
) -> anyhow::Result<UpPlan> {
    let exists = existing_clusters.contains(&o.cluster_name);
    if exists && !o.reuse_cluster {
        return Err(cluster_exists_error(o));
    }
    let mut steps = Vec::new();
    let run = |label: String, cmd: Cmd| Step::Run { label, cmd };
    if !exists {
        steps.push(run(
            format!("create kind cluster {}", o.cluster_name),
            create_cluster(o),
        ));
    }
    steps.push(run(
        format!("build images (make images IMAGE_TAG={})", images.tag),
        build_images(o, &images.tag),
    ));
    for image in images.by_name.values() {
        steps.push(run(format!("load {image} into kind"), load_image(o, image)));
    }
    if let Some(crds) = crds.filter(|c| !c.names.is_empty()) {
        steps.push(run(
            "apply CustomResourceDefinitions".into(),
            apply_file(o, &crds.path),
        ));
        steps.push(Step::CrdsEstablished(crds.names.clone()));
    }
    steps.push(run(
        format!("apply {OVERLAY} (images tagged {})", images.tag),
        apply_file(o, &o.artefact_dir.join(TAGGED_MANIFEST)),
    ));
    steps.push(Step::StackReady);
    Ok(UpPlan {
        steps,
        creates_cluster: !exists,
    })
}

/// The commands that tear the stack down: delete the cluster unless it is kept.
pub fn down_plan(o: &KindOptions) -> Vec<Cmd> {
    if o.keep_cluster {
        Vec::new()
    } else {
        vec![delete_cluster(o)]
    }
}

/// What to tell a person about a kept cluster.
pub fn kept_message(o: &KindOptions) -> String {
    let name = &o.cluster_name;
    format!(
        "kept kind cluster {name} (KEEP_CLUSTER=1): `kubectl --context {} get pods -n {}`; \
         delete it with `kind delete cluster --name {name}`",
        kind_context(name),
        audit_sdk::names::NAMESPACE
    )
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
