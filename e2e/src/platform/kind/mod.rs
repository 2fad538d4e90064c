//! The Kind platform: the stack as it runs in production, in a throwaway cluster.
//!
//! [`KindPlatform::up`] checks the host tools, renders and preflight-checks
//! `deploy/overlays/kind`, creates the cluster (or reuses one when asked),
//! builds and loads the images, applies CRDs and then the overlay, and waits
//! in dependency order — PostgreSQL Ready → DataStorage migrations done →
//! DataStorage Ready with a ready endpoint in its EndpointSlice → Gateway
//! Ready (its `/readyz` reaches DataStorage through the Service's DNS name) →
//! `/readyz` 200 through the NodePorts. Every wait has a deadline whose error
//! names the object and its last observed conditions; any failure collects
//! diagnostics into the artefact directory and deletes the cluster unless
//! `KEEP_CLUSTER=1`.
//!
//! - [`plan`]: which commands run, in which order (pure, unit-tested);
//! - [`runner`]: running them with captured output;
//! - [`stack`]: workloads and host URLs read from the rendered overlay;
//! - [`wait`]: kube-rs watches (HTTP: polls) with deadlines;
//! - [`workloads`]: scale, kill, re-point the Gateway, logs;
//! - [`tokens`]: the test callers' tokens (TokenRequest);
//! - [`diagnostics`]: the post-mortem;
//! - [`prereqs`]: `docker`, `kind`, `kubectl` on `PATH`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use audit_sdk::api::READYZ_PATH;
use audit_sdk::names::{API_PORT, NAMESPACE};
use kube::config::KubeConfigOptions;
use kube::{Client, Config};
use url::Url;

use super::{Component, Endpoints, Platform, Tokens};
use crate::preflight::{self, ImageRefs, Objects};
use crate::progress::step;

pub mod diagnostics;
pub mod plan;
pub mod prereqs;
pub mod runner;
pub mod stack;
pub mod tokens;
pub mod wait;
pub mod workloads;

pub use prereqs::{check_prerequisites, missing_prerequisites, Prerequisite};

use plan::{CrdManifest, Step, UpPlan};
use runner::{ProcessRunner, Runner};
use stack::{PodSet, Stack, WorkloadKind};

/// The cluster name unless told otherwise.
pub const DEFAULT_CLUSTER_NAME: &str = "kubernaut-e2e";

/// Liveness route of both services (health port).
pub const HEALTHZ_PATH: &str = "/healthz";

/// Deadlines of the platform's steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindTimeouts {
    /// Any single command other than the image build (`kind create cluster`,
    /// `kind load`, `kubectl apply`, …).
    pub command: Duration,
    /// `make images` (a cold build compiles the whole workspace in Docker).
    pub images: Duration,
    /// A CRD becoming Established.
    pub crd: Duration,
    /// One workload becoming Ready (includes pulling PostgreSQL's image).
    pub ready: Duration,
    /// Pods disappearing after a stop, kill or rollout (longer than the
    /// longest `terminationGracePeriodSeconds`, 50 s).
    pub gone: Duration,
    /// HTTP through the NodePorts answering.
    pub http: Duration,
}

impl Default for KindTimeouts {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(300),
            images: Duration::from_secs(30 * 60),
            crd: Duration::from_secs(60),
            ready: Duration::from_secs(300),
            gone: Duration::from_secs(120),
            http: Duration::from_secs(60),
        }
    }
}

/// How to run the Kind platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindOptions {
    /// `kind` cluster name (context `kind-<name>`).
    pub cluster_name: String,
    /// The workspace root (holding `deploy/` and the Makefile).
    pub repo_root: PathBuf,
    /// Use an existing cluster of that name instead of failing; create it
    /// when there is none.
    pub reuse_cluster: bool,
    /// Do not delete the cluster at the end or after a failure.
    pub keep_cluster: bool,
    /// Where command output, the rendered overlay and diagnostics go
    /// (`target/e2e/<run-id>/`).
    pub artefact_dir: PathBuf,
    pub timeouts: KindTimeouts,
}

impl KindOptions {
    /// Defaults: cluster `kubernaut-e2e`, created and deleted by the run,
    /// artefacts in `<repo_root>/target/e2e/<run-id>/`.
    pub fn new(repo_root: impl Into<PathBuf>) -> Self {
        let repo_root = repo_root.into();
        Self {
            cluster_name: DEFAULT_CLUSTER_NAME.to_owned(),
            artefact_dir: super::run_dir(&repo_root),
            repo_root,
            reuse_cluster: false,
            keep_cluster: false,
            timeouts: KindTimeouts::default(),
        }
    }

    /// [`KindOptions::new`] adjusted by the environment: `KEEP_CLUSTER=1`,
    /// `REUSE_CLUSTER=1`, `KIND_CLUSTER_NAME=<name>`.
    pub fn from_env(repo_root: impl Into<PathBuf>) -> Self {
        Self::from_vars(repo_root, |key| std::env::var(key).ok())
    }

    /// [`KindOptions::from_env`] with the variables read through `var`.
    pub fn from_vars(repo_root: impl Into<PathBuf>, var: impl Fn(&str) -> Option<String>) -> Self {
        let flag = |key: &str| {
            var(key).is_some_and(|v| {
                matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")
            })
        };
        let mut options = Self::new(repo_root);
        options.keep_cluster = flag("KEEP_CLUSTER");
        options.reuse_cluster = flag("REUSE_CLUSTER");
        if let Some(name) = var("KIND_CLUSTER_NAME").filter(|n| !n.trim().is_empty()) {
            options.cluster_name = name.trim().to_owned();
        }
        options
    }
}

/// The stack in a Kind cluster, reached through NodePorts on the host.
pub struct KindPlatform {
    options: KindOptions,
    runner: Arc<dyn Runner>,
    client: Client,
    http: reqwest::Client,
    stack: Stack,
    tokens: Tokens,
}

impl fmt::Debug for KindPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindPlatform")
            .field("options", &self.options)
            .field("stack", &self.stack)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl KindPlatform {
    /// Brings the stack up (see the module documentation). On failure the
    /// diagnostics are in `<artefact_dir>/diagnostics/` and the cluster is
    /// deleted unless `keep_cluster`.
    pub async fn up(options: KindOptions) -> anyhow::Result<Self> {
        check_prerequisites()?;
        std::fs::create_dir_all(&options.artefact_dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", options.artefact_dir.display()))?;
        let runner: Arc<dyn Runner> = Arc::new(ProcessRunner::new(
            options.artefact_dir.join("commands.log"),
        ));
        let (stack, crds) = step(
            &format!("render and preflight-check {}", plan::OVERLAY),
            prepare(&options),
        )
        .await?;
        let built = ImageRefs::load(&options.repo_root.join(plan::IMAGES_ENV))?;
        let images = built.with_tag(&plan::content_tag(&options.repo_root)?);
        let rendered = std::fs::read_to_string(options.artefact_dir.join("rendered.yaml"))?;
        std::fs::write(
            options.artefact_dir.join(plan::TAGGED_MANIFEST),
            built.retag(&rendered, &images),
        )?;
        let up_plan = resolve_plan(&*runner, &options, &images, crds.as_ref()).await?;
        if !up_plan.creates_cluster {
            eprintln!(
                "reusing kind cluster {} (REUSE_CLUSTER=1)",
                options.cluster_name
            );
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        match bring_up(&options, &*runner, &http, &stack, &up_plan).await {
            Ok((client, tokens)) => Ok(Self {
                options,
                runner,
                client,
                http,
                stack,
                tokens,
            }),
            Err(e) => {
                let dir = options.artefact_dir.join("diagnostics");
                if let Err(d) = step(
                    &format!("collect diagnostics into {}", dir.display()),
                    diagnostics::collect(&*runner, &options, NAMESPACE, &dir),
                )
                .await
                {
                    eprintln!("warning: diagnostics incomplete: {d:#}");
                }
                if let Err(t) = teardown(&options, &*runner).await {
                    eprintln!("warning: {t:#}");
                }
                Err(e.context(format!(
                    "the Kind platform did not come up (diagnostics in {})",
                    dir.display()
                )))
            }
        }
    }

    /// Deletes the cluster unless `keep_cluster` (then says how to delete it).
    pub async fn down(self) -> anyhow::Result<()> {
        teardown(&self.options, &*self.runner).await
    }

    /// The options the platform runs with.
    pub fn options(&self) -> &KindOptions {
        &self.options
    }

    fn pod_set(&self, component: Component) -> anyhow::Result<&PodSet> {
        self.stack.pod_set(component).ok_or_else(|| {
            anyhow::anyhow!("this stack has no {component} (the overlay does not define it)")
        })
    }

    /// Keeps the logs of the Pods of `set` that are about to be deleted (a
    /// stop, a kill, a rollout) in `<artefact_dir>/deleted-pods/`: once a Pod
    /// is gone, neither `kubectl logs` nor the failure diagnostics can read it.
    /// A failure to read is noted, never fatal.
    async fn keep_logs(&self, set: &PodSet, why: &str) {
        let dir = self.options.artefact_dir.join("deleted-pods");
        let file = dir.join(format!(
            "{}-{}-{why}.log",
            set.name,
            chrono::Utc::now().format("%H%M%S%.3f")
        ));
        let text = match workloads::logs(&self.client, set).await {
            Ok(text) => text,
            Err(e) => format!("(logs not readable before {why}: {e:#})\n"),
        };
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, text)) {
            eprintln!(
                "keeping the logs of {} in {}: {e}",
                set.describe(),
                file.display()
            );
        }
    }

    async fn wait_gone(&self, set: &PodSet) -> anyhow::Result<()> {
        Ok(wait::pods_gone(&self.client, set, self.options.timeouts.gone).await?)
    }

    /// Until the Gateway runs a Pod that is not one of `old` and `/healthz`
    /// answers through its NodePort. The NodePort routes like production (no
    /// `publishNotReadyAddresses`): only a Gateway Pod that reached DataStorage
    /// once since it started is behind it.
    async fn wait_gateway_live(&self, old: &BTreeSet<String>) -> anyhow::Result<()> {
        let t = &self.options.timeouts;
        wait::container_started(&self.client, &self.stack.gateway, old, t.ready).await?;
        let url = join(&self.stack.endpoints.gateway_health, HEALTHZ_PATH)?;
        wait::http_ok(&self.http, &url, t.http).await?;
        Ok(())
    }
}

#[async_trait]
impl Platform for KindPlatform {
    fn name(&self) -> String {
        "kind".into()
    }

    fn endpoints(&self) -> &Endpoints {
        &self.stack.endpoints
    }

    fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    fn has(&self, component: Component) -> bool {
        self.stack.pod_set(component).is_some()
    }

    /// Scales the workload to zero (SIGTERM, graceful shutdown) and waits
    /// until no Pod is left.
    async fn stop(&mut self, component: Component) -> anyhow::Result<()> {
        let set = self.pod_set(component)?;
        step(&format!("stop {}", set.describe()), async {
            self.keep_logs(set, "stop").await;
            workloads::scale(&self.client, set, 0).await?;
            self.wait_gone(set).await
        })
        .await
    }

    /// Kills the main container of every Pod for real (`crictl stop
    /// --timeout 0` on its node: SIGKILL, no shutdown runs), then deletes the
    /// Pods with grace period 0 and scales to zero, so the kubelet's restart
    /// of the container does not bring it back; waits until no Pod is left.
    /// A Deployment's Pods are deleted before the scale-down so it cannot
    /// SIGTERM a restarted container; a StatefulSet is scaled first, as it
    /// would recreate a deleted Pod under the same name.
    async fn kill(&mut self, component: Component) -> anyhow::Result<()> {
        let set = self.pod_set(component)?;
        step(&format!("kill {}", set.describe()), async {
            self.keep_logs(set, "kill").await;
            let containers = workloads::running_containers(&self.client, set).await?;
            if containers.is_empty() {
                anyhow::bail!("{} has no running container to kill", set.describe());
            }
            for (node, id) in &containers {
                self.runner
                    .run(&plan::kill_container(&self.options, node, id))
                    .await?;
            }
            match set.kind {
                WorkloadKind::Deployment => {
                    workloads::force_delete_pods(&self.client, set).await?;
                    workloads::scale(&self.client, set, 0).await?;
                }
                WorkloadKind::StatefulSet => {
                    workloads::scale(&self.client, set, 0).await?;
                    workloads::force_delete_pods(&self.client, set).await?;
                }
            }
            self.wait_gone(set).await
        })
        .await
    }

    /// Scales back to the overlay's replica count and waits: PostgreSQL Ready;
    /// DataStorage Ready, in its EndpointSlice and answering `/readyz` through
    /// the NodePort; the Gateway live (container started, `/healthz` answers).
    async fn start(&mut self, component: Component) -> anyhow::Result<()> {
        let set = self.pod_set(component)?;
        let t = &self.options.timeouts;
        step(&format!("start {}", set.describe()), async {
            workloads::scale(&self.client, set, set.replicas).await?;
            match component {
                Component::Postgres => {
                    wait::pods_condition(&self.client, set, "Ready", t.ready).await?;
                }
                Component::DataStorage => {
                    wait::serving(&self.client, set, t.ready).await?;
                    let url = join(&self.stack.endpoints.data_storage_health, READYZ_PATH)?;
                    wait::http_ok(&self.http, &url, t.http).await?;
                }
                Component::Gateway => self.wait_gateway_live(&BTreeSet::new()).await?,
            }
            Ok(())
        })
        .await
    }

    /// Sets (or removes) `GATEWAY_AUDIT__DATA_STORAGE_URL` on the Gateway
    /// workload and waits for the rollout: the old Pods gone (each drains and
    /// spools first), new ones live. Each Pod's spool is its own claim, so the
    /// Pod of the same ordinal replays what its predecessor left.
    async fn restart_gateway_with_data_storage_url(
        &mut self,
        url: Option<&str>,
    ) -> anyhow::Result<()> {
        let set = &self.stack.gateway;
        let label = match url {
            Some(url) => format!("restart {} with data_storage_url {url}", set.describe()),
            None => format!(
                "restart {} with its configured data_storage_url",
                set.describe()
            ),
        };
        let t = &self.options.timeouts;
        step(&label, async {
            self.keep_logs(set, "restart").await;
            let old = workloads::pod_uids(&self.client, set).await?;
            let restarted_at = chrono::Utc::now().to_rfc3339();
            let patch = workloads::gateway_url_patch(set, url, &restarted_at);
            let generation = workloads::patch_workload(&self.client, set, patch).await?;
            wait::generation_observed(&self.client, set, generation, t.ready).await?;
            if set.kind == WorkloadKind::StatefulSet {
                workloads::delete_pods(&self.client, set).await?;
            }
            wait::pods_replaced(&self.client, set, &old, t.gone).await?;
            self.wait_gateway_live(&old).await
        })
        .await
    }

    /// A Service name that does not exist: the Deployment's name instead of
    /// the Service's — the reference platform's real misconfiguration.
    fn unresolvable_data_storage_url(&self) -> String {
        format!(
            "http://{}.{NAMESPACE}.svc.cluster.local:{API_PORT}",
            self.stack.data_storage.name
        )
    }

    async fn logs(&self, component: Component) -> anyhow::Result<String> {
        workloads::logs(&self.client, self.pod_set(component)?).await
    }

    async fn collect_diagnostics(&self, dir: &Path) -> anyhow::Result<()> {
        diagnostics::collect(&*self.runner, &self.options, NAMESPACE, dir).await
    }

    async fn down(self: Box<Self>) -> anyhow::Result<()> {
        KindPlatform::down(*self).await
    }

    /// `gateway-service` has no `publishNotReadyAddresses`: it routes like
    /// production, to Ready Pods only.
    fn routes_to_unready(&self) -> bool {
        false
    }

    /// What a one-node Kind control plane serves without throttling the
    /// suite's own calls (watches, TokenRequests) alongside the Gateway's.
    fn kube_api_budget(&self) -> Option<u32> {
        Some(KIND_API_REQUESTS_PER_SECOND)
    }

    /// The sum of `apiserver_request_total{code="429"}` in the API server's
    /// `/metrics`.
    async fn api_throttled(&self) -> anyhow::Result<Option<u64>> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = self.client.request_text(request).await?;
        Ok(Some(throttled_requests(&text)))
    }
}

/// Kubernetes API requests per second the Gateway may send a Kind cluster.
pub const KIND_API_REQUESTS_PER_SECOND: u32 = 300;

/// Sum of the `apiserver_request_total` samples with `code="429"`.
pub fn throttled_requests(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{") && l.contains("code=\"429\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Deletes the cluster named in `options`, kept or not: for an explicit
/// `e2e down` after `e2e up` handed the cluster over.
pub async fn delete_cluster(options: &KindOptions) -> anyhow::Result<()> {
    let runner = ProcessRunner::unlogged();
    step(
        &format!("delete kind cluster {}", options.cluster_name),
        runner.run(&plan::delete_cluster(options)),
    )
    .await?;
    Ok(())
}

/// The log of `component` in the running cluster named in `options` (what
/// [`Platform::logs`] returns), for `e2e logs` outside a run.
pub async fn logs(options: &KindOptions, component: Component) -> anyhow::Result<String> {
    let overlay = options.repo_root.join(plan::OVERLAY);
    let rendered = tokio::task::spawn_blocking(move || preflight::render(&overlay)).await??;
    let kind_config = std::fs::read_to_string(options.repo_root.join(plan::CLUSTER_CONFIG))?;
    let stack = Stack::from_rendered(&rendered, &kind_config)?;
    let set = stack.pod_set(component).ok_or_else(|| {
        anyhow::anyhow!("this stack has no {component} (the overlay does not define it)")
    })?;
    let client = connected(&mut None, options).await?;
    workloads::logs(&client, set).await
}

/// Renders the overlay, runs the preflight checks (a finding stops the run
/// before any cluster exists), reads the stack and writes the CRDs to
/// their own file. Keeps `rendered.yaml` in the artefact directory.
async fn prepare(o: &KindOptions) -> anyhow::Result<(Stack, Option<CrdManifest>)> {
    let root = o.repo_root.clone();
    let overlay = root.join(plan::OVERLAY);
    let rendered = tokio::task::spawn_blocking(move || preflight::render(&overlay)).await??;
    std::fs::write(o.artefact_dir.join("rendered.yaml"), &rendered)?;
    let objects = Objects::parse(&rendered)?;
    let findings = preflight::check(&objects, &preflight::Context::from_repo(&root)?);
    if !findings.is_empty() {
        let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "{} has {} preflight problem(s):\n{}",
            plan::OVERLAY,
            findings.len(),
            list.join("\n")
        );
    }
    let kind_config = std::fs::read_to_string(root.join(plan::CLUSTER_CONFIG))?;
    let stack = Stack::from_rendered(&rendered, &kind_config)?;
    let crds = if stack.crds.is_empty() {
        None
    } else {
        let path = o.artefact_dir.join("crds.yaml");
        std::fs::write(&path, stack.crd_manifest())?;
        Some(CrdManifest {
            path,
            names: stack.crd_names(),
        })
    };
    Ok((stack, crds))
}

/// Asks `kind` which clusters exist and plans accordingly.
pub async fn resolve_plan(
    runner: &dyn Runner,
    o: &KindOptions,
    images: &ImageRefs,
    crds: Option<&CrdManifest>,
) -> anyhow::Result<UpPlan> {
    let existing = plan::parse_clusters(&runner.run(&plan::list_clusters()).await?);
    plan::up_plan(o, &existing, images, crds)
}

/// Runs the plan; returns the API client and the test callers' tokens.
async fn bring_up(
    o: &KindOptions,
    runner: &dyn Runner,
    http: &reqwest::Client,
    stack: &Stack,
    up_plan: &UpPlan,
) -> anyhow::Result<(Client, Tokens)> {
    let mut client: Option<Client> = None;
    for s in &up_plan.steps {
        match s {
            Step::Run { label, cmd } => {
                step(label, runner.run(cmd)).await?;
            }
            Step::CrdsEstablished(names) => {
                let c = connected(&mut client, o).await?;
                step("CustomResourceDefinitions Established", async {
                    for name in names {
                        wait::crd_established(&c, name, o.timeouts.crd).await?;
                    }
                    Ok(())
                })
                .await?;
            }
            Step::StackReady => {
                let c = connected(&mut client, o).await?;
                wait_stack(&c, http, stack, &o.timeouts).await?;
            }
        }
    }
    let client = connected(&mut client, o).await?;
    let tokens = step(
        "request the test callers' tokens (TokenRequest)",
        tokens::request_tokens(&client, NAMESPACE),
    )
    .await?;
    Ok((client, tokens))
}

/// The API client for the cluster's context, built on first use (the
/// context exists only once the cluster does).
async fn connected(client: &mut Option<Client>, o: &KindOptions) -> anyhow::Result<Client> {
    if let Some(c) = client {
        return Ok(c.clone());
    }
    let context = plan::kind_context(&o.cluster_name);
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_kubeconfig(&options)
        .await
        .map_err(|e| anyhow::anyhow!("kubeconfig context {context}: {e}"))?;
    let c = Client::try_from(config)?;
    *client = Some(c.clone());
    Ok(c)
}

/// The dependency-ordered waits after `kubectl apply`.
async fn wait_stack(
    client: &Client,
    http: &reqwest::Client,
    stack: &Stack,
    t: &KindTimeouts,
) -> anyhow::Result<()> {
    if let Some(pg) = &stack.postgres {
        step(&format!("{} Ready", pg.describe()), async {
            Ok(wait::pods_condition(client, pg, "Ready", t.ready).await?)
        })
        .await?;
    }
    let ds = &stack.data_storage;
    if !ds.init_containers.is_empty() {
        step(
            &format!(
                "{} initialised (init containers: {})",
                ds.describe(),
                ds.init_containers.join(", ")
            ),
            async { Ok(wait::pods_condition(client, ds, "Initialized", t.ready).await?) },
        )
        .await?;
    }
    step(
        &format!(
            "{} Ready and in the EndpointSlice of {}",
            ds.describe(),
            ds.service
        ),
        async { Ok(wait::serving(client, ds, t.ready).await?) },
    )
    .await?;
    let gw = &stack.gateway;
    step(
        &format!(
            "{} Ready (its /readyz reaches {} by DNS)",
            gw.describe(),
            ds.service
        ),
        async { Ok(wait::pods_condition(client, gw, "Ready", t.ready).await?) },
    )
    .await?;
    let e = &stack.endpoints;
    step("/readyz answers 200 through the NodePorts", async {
        for base in [
            &e.data_storage_health,
            &e.data_storage_api,
            &e.gateway_health,
            &e.gateway_api,
        ] {
            wait::http_ok(http, &join(base, READYZ_PATH)?, t.http).await?;
        }
        Ok(())
    })
    .await
}

/// Runs the down plan (or says how to delete a kept cluster).
async fn teardown(o: &KindOptions, runner: &dyn Runner) -> anyhow::Result<()> {
    let commands = plan::down_plan(o);
    if commands.is_empty() {
        eprintln!("{}", plan::kept_message(o));
    }
    for cmd in commands {
        step(
            &format!("delete kind cluster {}", o.cluster_name),
            runner.run(&cmd),
        )
        .await?;
    }
    Ok(())
}

fn join(base: &Url, path: &str) -> anyhow::Result<Url> {
    Ok(base.join(path)?)
}
