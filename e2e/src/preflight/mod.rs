//! Preflight checks of rendered manifests: the reference platform's
//! deployment failures, caught before a cluster exists.
//!
//! `e2e preflight` renders `deploy/overlays/kind` with `kubectl kustomize`,
//! parses every object with `k8s-openapi` types and runs each check; each
//! finding names the object, the field and the fix.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod configs;
mod host_paths;
mod images;
mod node_ports;
pub mod objects;
pub mod probes;
mod rbac;
mod tls;
mod urls;

pub use images::ImageRefs;
pub use objects::Objects;

/// Which check found a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// A URL into the cluster names a Service or port that does not exist.
    ServiceUrl,
    /// A host path or `KUBECONFIG` reaches into a Pod.
    HostPath,
    /// A DataStorage caller lacks the RBAC verbs it needs.
    Rbac,
    /// A probe is missing or targets an undeclared port.
    Probes,
    /// An image is not what `make images` builds.
    Image,
    /// A NodePort has no Kind port mapping.
    NodePort,
    /// A service's ConfigMap holds a configuration it would refuse.
    Config,
    /// A caller's scheme differs from DataStorage's TLS, or a certificate or
    /// CA file is not mounted.
    Tls,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ServiceUrl => "service-url",
            Self::HostPath => "host-path",
            Self::Rbac => "rbac",
            Self::Probes => "probes",
            Self::Image => "image",
            Self::NodePort => "node-port",
            Self::Config => "config",
            Self::Tls => "tls",
        })
    }
}

/// One problem, precise enough to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    /// `ConfigMap kubernaut-system/gateway-config`.
    pub object: String,
    /// `data[config.yaml]`, `spec.template.spec.containers[gateway].env[KUBECONFIG]`, …
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {} {}: {}\n    fix: {}",
            self.check, self.object, self.field, self.problem, self.fix
        )
    }
}

/// What the checks compare the manifests with.
#[derive(Debug, Clone)]
pub struct Context {
    /// Images `make images` builds.
    pub images: ImageRefs,
    /// Host ports the Kind cluster maps to node ports (`None`: not checked).
    pub kind_node_ports: Option<Vec<i32>>,
    /// `hostPath` volumes allowed anyway.
    pub host_path_allow: Vec<String>,
    /// The cluster's DNS domain (`<svc>.<ns>.svc.<domain>`).
    pub cluster_domain: String,
}

/// Kubernetes' default cluster domain (Kind's, and most clusters').
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

impl Context {
    /// The repository's own context: `deploy/images.env`, `deploy/kind/cluster.yaml`.
    pub fn from_repo(root: &Path) -> anyhow::Result<Self> {
        let images = ImageRefs::load(&root.join("deploy/images.env"))?;
        let kind_node_ports = Some(node_ports::load_kind_ports(
            &root.join("deploy/kind/cluster.yaml"),
        )?);
        Ok(Self {
            images,
            kind_node_ports,
            host_path_allow: Vec::new(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
        })
    }
}

/// Overlay of production (registry images, no NodePorts).
pub const PRODUCTION_OVERLAY: &str = "deploy/overlays/production";

impl Context {
    /// The context of `overlay`: the production overlay's images come from
    /// `PRODUCTION_REGISTRY`/`PRODUCTION_TAG` and it has no Kind port mappings;
    /// every other overlay is checked as the Kind one.
    pub fn for_overlay(root: &Path, overlay: &Path) -> anyhow::Result<Self> {
        let mut context = Self::from_repo(root)?;
        let production = root.join(PRODUCTION_OVERLAY);
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same(overlay, &production) || same(&root.join(overlay), &production) {
            context.images = ImageRefs::load_production(&root.join("deploy/images.env"))?;
            context.kind_node_ports = None;
        }
        Ok(context)
    }
}

/// Runs every check.
pub fn check(objects: &Objects, context: &Context) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(urls::check(objects, context));
    findings.extend(host_paths::check(objects, &context.host_path_allow));
    findings.extend(rbac::check(objects));
    findings.extend(probes::check(objects));
    findings.extend(images::check(objects, &context.images));
    findings.extend(configs::check(objects));
    findings.extend(tls::check(objects));
    if let Some(ports) = &context.kind_node_ports {
        findings.extend(node_ports::check(objects, ports));
    }
    findings.sort_by(|a, b| (a.check, &a.object).cmp(&(b.check, &b.object)));
    findings
}

/// Renders a kustomize directory with `kubectl kustomize` (works offline).
pub fn render(dir: &Path) -> anyhow::Result<String> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "running kubectl kustomize {}: {e} (is kubectl installed?)",
                dir.display()
            )
        })?;
    if !output.status.success() {
        anyhow::bail!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The workspace root (the directory holding `deploy/`), from this crate's location.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ lives in the workspace root")
        .to_owned()
}

/// Renders `overlay`, parses it and runs every check with the repo's context.
pub fn check_overlay(root: &Path, overlay: &Path) -> anyhow::Result<(Objects, Vec<Finding>)> {
    let rendered = render(overlay)?;
    let objects = Objects::parse(&rendered)?;
    let findings = check(&objects, &Context::for_overlay(root, overlay)?);
    Ok((objects, findings))
}
