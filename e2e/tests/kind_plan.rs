//! The Kind platform without Docker, kind or a cluster: the command plan
//! (which commands, in which order, with which arguments), the stack read
//! from the real overlay, the e2e callers' RBAC, the diagnostics' commands and
//! the prerequisite check. Rendering uses `kubectl kustomize` (offline).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use audit_sdk::names::{
    API_PORT, DATA_STORAGE_SERVICE, GATEWAY_SERVICE, HEALTH_PORT, NAMESPACE, POSTGRES_SERVICE,
};
use e2e::platform::kind::plan::{self, Cmd, CrdManifest, Step};
use e2e::platform::kind::runner::Runner;
use e2e::platform::kind::stack::Stack;
use e2e::platform::kind::tokens::{
    READER_SERVICE_ACCOUNT, SIGNAL_SENDER_SERVICE_ACCOUNT, WRITER_SERVICE_ACCOUNT,
};
use e2e::platform::kind::{diagnostics, prereqs, resolve_plan, KindOptions};
use e2e::preflight::objects::{name, ns};
use e2e::preflight::{self, ImageRefs, Objects};

/// Answers commands from a script and records them; a command no rule
/// matches fails.
#[derive(Debug, Default)]
struct FakeRunner {
    /// (prefix of the command line, stdout); an `Err` stdout makes it fail.
    rules: Vec<(String, Result<String, String>)>,
    ran: Mutex<Vec<Cmd>>,
}

impl FakeRunner {
    fn answering(rules: &[(&str, Result<&str, &str>)]) -> Self {
        Self {
            rules: rules
                .iter()
                .map(|(p, r)| ((*p).to_owned(), r.map(str::to_owned).map_err(str::to_owned)))
                .collect(),
            ran: Mutex::default(),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.ran
            .lock()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

#[async_trait]
impl Runner for FakeRunner {
    async fn run(&self, cmd: &Cmd) -> anyhow::Result<String> {
        self.ran.lock().unwrap().push(cmd.clone());
        let line = cmd.to_string();
        match self
            .rules
            .iter()
            .find(|(prefix, _)| line.starts_with(prefix))
        {
            Some((_, Ok(out))) => Ok(out.clone()),
            Some((_, Err(e))) => anyhow::bail!("{e}"),
            None => anyhow::bail!("unexpected command: {line}"),
        }
    }
}

fn root() -> PathBuf {
    preflight::repo_root()
}

fn options() -> KindOptions {
    let mut o = KindOptions::new(root());
    o.artefact_dir = PathBuf::from("/tmp/e2e-artefacts");
    o
}

/// The images as a run builds them: under a content tag.
fn images() -> ImageRefs {
    ImageRefs::load(&root().join(plan::IMAGES_ENV))
        .unwrap()
        .with_tag("e2e-0123456789abcdef")
}

fn crds() -> CrdManifest {
    CrdManifest {
        path: PathBuf::from("/tmp/e2e-artefacts/crds.yaml"),
        names: vec!["remediationrequests.kubernaut.ai".into()],
    }
}

fn argv(cmd: &Cmd) -> Vec<String> {
    cmd.argv().into_iter().map(str::to_owned).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn up_creates_the_cluster_builds_loads_every_image_then_applies_crds_first() {
    let o = options();
    let up = plan::up_plan(&o, &[], &images(), Some(&crds())).unwrap();
    assert!(up.creates_cluster);
    let root = path(&root());
    let mut expected = vec![
        strings(&[
            "kind",
            "create",
            "cluster",
            "--name",
            "kubernaut-e2e",
            "--config",
        ]),
        strings(&[
            "make",
            "-C",
            &root,
            "images",
            "IMAGE_TAG=e2e-0123456789abcdef",
        ]),
    ];
    expected[0].extend([
        format!("{root}/deploy/kind/cluster.yaml"),
        "--wait".into(),
        "120s".into(),
    ]);
    let refs = images();
    assert_eq!(refs.by_name.len(), 2, "deploy/images.env names two images");
    for image in refs.by_name.values() {
        expected.push(strings(&[
            "kind",
            "load",
            "docker-image",
            image,
            "--name",
            "kubernaut-e2e",
        ]));
    }
    expected.push(strings(&[
        "kubectl",
        "--context",
        "kind-kubernaut-e2e",
        "apply",
        "-f",
        "/tmp/e2e-artefacts/crds.yaml",
    ]));
    expected.push(strings(&[
        "kubectl",
        "--context",
        "kind-kubernaut-e2e",
        "apply",
        "-f",
        "/tmp/e2e-artefacts/rendered-tagged.yaml",
    ]));
    let got: Vec<Vec<String>> = up.commands().into_iter().map(argv).collect();
    assert_eq!(got, expected);
    assert!(
        refs.by_name
            .values()
            .any(|i| i == "localhost/kubernaut/gateway:e2e-0123456789abcdef"),
        "{refs:?}"
    );

    // The CRDs are established before the overlay is applied, and the stack
    // is waited for last.
    let kinds: Vec<&str> = up
        .steps
        .iter()
        .map(|s| match s {
            Step::Run { cmd, .. } if cmd.args.iter().any(|a| a.ends_with("crds.yaml")) => {
                "apply crds"
            }
            Step::Run { cmd, .. }
                if cmd.args.iter().any(|a| a.ends_with(plan::TAGGED_MANIFEST)) =>
            {
                "apply overlay"
            }
            Step::Run { .. } => "run",
            Step::CrdsEstablished(names) => {
                assert_eq!(names, &["remediationrequests.kubernaut.ai"]);
                "crds established"
            }
            Step::StackReady => "stack ready",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "run",
            "run",
            "run",
            "run",
            "apply crds",
            "crds established",
            "apply overlay",
            "stack ready"
        ]
    );
}

#[test]
fn without_crds_the_overlay_is_applied_directly() {
    let up = plan::up_plan(&options(), &[], &images(), None).unwrap();
    assert!(!up
        .steps
        .iter()
        .any(|s| matches!(s, Step::CrdsEstablished(_))));
    assert_eq!(up.steps.last(), Some(&Step::StackReady));
}

#[test]
fn an_existing_cluster_is_an_error_that_says_how_to_delete_or_reuse_it() {
    let existing = strings(&["other", "kubernaut-e2e"]);
    let err = plan::up_plan(&options(), &existing, &images(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kind delete cluster --name kubernaut-e2e"),
        "{err}"
    );
    assert!(err.contains("REUSE_CLUSTER=1"), "{err}");
    // Another cluster's name is no obstacle.
    assert!(plan::up_plan(&options(), &strings(&["other"]), &images(), None).is_ok());
}

#[tokio::test]
async fn reuse_skips_create_but_checks_the_cluster_exists() {
    let mut o = options();
    o.reuse_cluster = true;
    let runner = FakeRunner::answering(&[("kind get clusters", Ok("other\nkubernaut-e2e\n"))]);
    let up = resolve_plan(&runner, &o, &images(), None).await.unwrap();
    assert_eq!(
        runner.lines(),
        ["kind get clusters"],
        "the existence check ran"
    );
    assert!(!up.creates_cluster);
    let programs: Vec<String> = up
        .commands()
        .iter()
        .map(|c| format!("{} {}", c.program, c.args[0]))
        .collect();
    assert!(
        !programs.contains(&"kind create".to_owned()),
        "{programs:?}"
    );
    assert_eq!(
        programs[0], "make -C",
        "images are still built for this tree"
    );
    assert!(programs.contains(&"kind load".to_owned()));

    // Asked to reuse a cluster that is not there: it is created.
    let runner = FakeRunner::answering(&[("kind get clusters", Ok(""))]);
    let up = resolve_plan(&runner, &o, &images(), None).await.unwrap();
    assert!(up.creates_cluster);
    assert_eq!(up.commands()[0].argv()[..3], ["kind", "create", "cluster"]);
}

#[tokio::test]
async fn an_existing_cluster_is_found_through_kind_get_clusters() {
    let runner = FakeRunner::answering(&[("kind get clusters", Ok("kubernaut-e2e\n"))]);
    let err = resolve_plan(&runner, &options(), &images(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn down_deletes_the_cluster_unless_kept() {
    let mut o = options();
    let down: Vec<Vec<String>> = plan::down_plan(&o).iter().map(argv).collect();
    assert_eq!(
        down,
        [strings(&[
            "kind",
            "delete",
            "cluster",
            "--name",
            "kubernaut-e2e"
        ])]
    );
    o.keep_cluster = true;
    assert!(plan::down_plan(&o).is_empty());
    let message = plan::kept_message(&o);
    assert!(
        message.contains("kind delete cluster --name kubernaut-e2e"),
        "{message}"
    );
}

#[test]
fn options_come_from_the_environment() {
    let vars: BTreeMap<&str, &str> = [
        ("KEEP_CLUSTER", "1"),
        ("REUSE_CLUSTER", "true"),
        ("KIND_CLUSTER_NAME", "mine"),
    ]
    .into();
    let o = KindOptions::from_vars(root(), |k| vars.get(k).map(|v| (*v).to_owned()));
    assert!(o.keep_cluster && o.reuse_cluster);
    assert_eq!(o.cluster_name, "mine");
    let defaults = KindOptions::from_vars(root(), |_| None);
    assert!(!defaults.keep_cluster && !defaults.reuse_cluster);
    assert_eq!(defaults.cluster_name, "kubernaut-e2e");
    assert!(
        defaults.artefact_dir.starts_with(root().join("target/e2e")),
        "{}",
        defaults.artefact_dir.display()
    );
    let zero = KindOptions::from_vars(root(), |k| (k == "KEEP_CLUSTER").then(|| "0".to_owned()));
    assert!(!zero.keep_cluster);
}

#[test]
fn an_empty_path_misses_docker_kind_and_kubectl() {
    let empty = tempfile::tempdir().unwrap();
    let missing = prereqs::missing_in(Some(empty.path().as_os_str()));
    let tools: Vec<&str> = missing.iter().map(|p| p.tool).collect();
    assert_eq!(tools, ["docker", "kind", "kubectl"]);
    let report = prereqs::report(&missing);
    assert!(report.contains("`docker` not found on PATH"), "{report}");
}

fn rendered() -> String {
    preflight::render(&root().join(plan::OVERLAY)).unwrap()
}

fn kind_config() -> String {
    std::fs::read_to_string(root().join(plan::CLUSTER_CONFIG)).unwrap()
}

/// The nodePort of `service`'s `port`, from the rendered overlay.
fn node_port(objects: &Objects, service: &str, port: u16) -> i32 {
    objects
        .service(NAMESPACE, service)
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.port == i32::from(port)))
        .and_then(|p| p.node_port)
        .unwrap()
}

#[test]
fn the_real_overlay_gives_the_workloads_and_node_port_urls() {
    let rendered = rendered();
    let objects = Objects::parse(&rendered).unwrap();
    let stack = Stack::from_rendered(&rendered, &kind_config()).unwrap();

    let e = &stack.endpoints;
    for (url, service, port) in [
        (&e.data_storage_api, DATA_STORAGE_SERVICE, API_PORT),
        (&e.data_storage_health, DATA_STORAGE_SERVICE, HEALTH_PORT),
        (&e.gateway_api, GATEWAY_SERVICE, API_PORT),
        (&e.gateway_health, GATEWAY_SERVICE, HEALTH_PORT),
    ] {
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        // deploy/kind/cluster.yaml maps every NodePort to the same host port.
        assert_eq!(
            url.port().map(i32::from),
            Some(node_port(&objects, service, port)),
            "{service}:{port}"
        );
    }

    assert_eq!(
        stack.data_storage.describe(),
        "Deployment kubernaut-system/datastorage"
    );
    assert!(stack
        .data_storage
        .init_containers
        .contains(&"migrate".to_owned()));
    assert_eq!(stack.data_storage.service, DATA_STORAGE_SERVICE);
    assert_eq!(
        stack.gateway.describe(),
        "StatefulSet kubernaut-system/gateway"
    );
    assert_eq!(stack.gateway.container, "gateway");
    let has_postgres = objects.service(NAMESPACE, POSTGRES_SERVICE).is_some();
    assert_eq!(stack.postgres.is_some(), has_postgres);
    if let Some(pg) = &stack.postgres {
        assert_eq!(pg.describe(), "StatefulSet kubernaut-system/postgresql");
    }
    assert_eq!(stack.crd_names(), ["remediationrequests.kubernaut.ai"]);
}

/// `(resource name, verbs)` granted on core `services` to ServiceAccount
/// `sa` by RoleBindings in the platform namespace.
fn service_verbs(objects: &Objects, sa: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for b in &objects.role_bindings {
        let bound = b.subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount" && s.name == sa && s.namespace.as_deref() == Some(NAMESPACE)
        });
        if ns(&b.metadata) != NAMESPACE || !bound {
            continue;
        }
        let role = objects
            .cluster_roles
            .iter()
            .find(|r| name(&r.metadata) == b.role_ref.name)
            .unwrap();
        for rule in role.rules.iter().flatten() {
            assert!(rule.resources.iter().flatten().all(|r| r == "services"));
            for resource in rule.resource_names.iter().flatten() {
                out.entry(resource.clone())
                    .or_default()
                    .extend(rule.verbs.iter().cloned());
            }
        }
    }
    for b in &objects.cluster_role_bindings {
        assert!(
            !b.subjects.iter().flatten().any(|s| s.name == sa),
            "{sa} must not be bound cluster-wide"
        );
    }
    out
}

#[test]
fn the_e2e_callers_hold_exactly_the_verbs_the_scenarios_rely_on() {
    let objects = Objects::parse(&rendered()).unwrap();
    let set = |verbs: &[&str]| {
        verbs
            .iter()
            .map(|v| (*v).to_owned())
            .collect::<BTreeSet<_>>()
    };
    let grants = |sa: &str| service_verbs(&objects, sa);

    // The writer is refused queries, the reader is refused writes.
    assert_eq!(
        grants(WRITER_SERVICE_ACCOUNT),
        [(DATA_STORAGE_SERVICE.to_owned(), set(&["create"]))].into()
    );
    assert_eq!(
        grants(READER_SERVICE_ACCOUNT),
        [(DATA_STORAGE_SERVICE.to_owned(), set(&["get", "list"]))].into()
    );
    assert_eq!(
        grants(SIGNAL_SENDER_SERVICE_ACCOUNT),
        [(GATEWAY_SERVICE.to_owned(), set(&["create"]))].into()
    );
    for sa in [
        WRITER_SERVICE_ACCOUNT,
        READER_SERVICE_ACCOUNT,
        SIGNAL_SENDER_SERVICE_ACCOUNT,
    ] {
        assert!(
            objects
                .service_accounts
                .iter()
                .any(|s| name(&s.metadata) == sa && ns(&s.metadata) == NAMESPACE),
            "ServiceAccount {sa} is in the overlay"
        );
    }
}

// The Gateway's spool (one claim per StatefulSet Pod) is asserted in tests/manifests.rs.

const PODS: &str = r#"{
  "apiVersion": "v1", "kind": "List", "metadata": {},
  "items": [
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "datastorage-1", "namespace": "kubernaut-system"},
     "spec": {"initContainers": [{"name": "migrate"}], "containers": [{"name": "datastorage"}]},
     "status": {
       "initContainerStatuses": [{"name": "migrate", "ready": false, "restartCount": 2, "image": "x", "imageID": ""}],
       "containerStatuses": [{"name": "datastorage", "ready": false, "restartCount": 0, "image": "x", "imageID": ""}]}},
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "gateway-1", "namespace": "kubernaut-system"},
     "spec": {"containers": [{"name": "gateway"}]}}
  ]
}"#;

#[tokio::test]
async fn diagnostics_collect_every_container_log_events_objects_and_node_logs() {
    let dir = tempfile::tempdir().unwrap();
    let o = options();
    let runner = FakeRunner::answering(&[
        ("kubectl --context kind-kubernaut-e2e get pods", Ok(PODS)),
        (
            "kubectl --context kind-kubernaut-e2e logs",
            Ok("a log line\n"),
        ),
        (
            "kubectl --context kind-kubernaut-e2e describe",
            Err("the server is gone"),
        ),
        (
            "kubectl --context kind-kubernaut-e2e get",
            Ok("kind: List\n"),
        ),
        ("kind export logs", Ok("")),
    ]);
    diagnostics::collect(&runner, &o, NAMESPACE, dir.path())
        .await
        .unwrap();
    let lines = runner.lines();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let errors = read("errors.txt");
    let logs: Vec<&str> = lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix("kubectl --context kind-kubernaut-e2e logs -n kubernaut-system ")
        })
        .collect();
    assert_eq!(
        logs,
        [
            "datastorage-1 -c migrate",
            "datastorage-1 -c migrate --previous",
            "datastorage-1 -c datastorage",
            "gateway-1 -c gateway",
        ],
        "{errors}"
    );
    assert!(
        lines.iter().any(|l| l.contains("get events -A")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("get deployments,statefulsets") && l.ends_with("-o yaml")),
        "{lines:#?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "kind export logs {}/kind --name kubernaut-e2e",
            dir.path().display()
        )
    );
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    assert_eq!(
        read("logs/datastorage-1.migrate.previous.log"),
        "a log line\n"
    );
    assert_eq!(read("logs/gateway-1.gateway.log"), "a log line\n");
    assert_eq!(read("events.txt"), "kind: List\n");
    assert!(
        errors.contains("describe-pods.txt") && errors.contains("the server is gone"),
        "a failed item is reported, the rest still collected: {errors}"
    );
}

#[test]
fn a_kill_stops_the_container_on_its_node_without_a_grace_period() {
    let o = options();
    let cmd = plan::kill_container(&o, "kubernaut-e2e-control-plane", "4f3c2a");
    assert_eq!(
        argv(&cmd),
        strings(&[
            "docker",
            "exec",
            "kubernaut-e2e-control-plane",
            "crictl",
            "stop",
            "--timeout",
            "0",
            "4f3c2a"
        ])
    );
    assert_eq!(
        plan::runtime_container_id("containerd://4f3c2a9b"),
        Some("4f3c2a9b")
    );
    assert_eq!(plan::runtime_container_id("containerd://"), None);
    assert_eq!(plan::runtime_container_id("4f3c2a9b"), None);
    assert_eq!(plan::runtime_container_id("containerd://a; rm -rf /"), None);
}

#[test]
fn kind_export_logs_goes_into_the_run_directory() {
    let o = options();
    let dir = o.artefact_dir.join("failures/kind");
    assert_eq!(
        argv(&plan::export_logs(&o, &dir)),
        strings(&[
            "kind",
            "export",
            "logs",
            &path(&dir),
            "--name",
            &o.cluster_name
        ])
    );
}

#[test]
fn images_are_tagged_by_the_content_of_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("gateway/src")).unwrap();
    std::fs::create_dir_all(dir.path().join("target/debug")).unwrap();
    std::fs::write(dir.path().join("gateway/src/main.rs"), "fn main() {}").unwrap();
    let first = plan::content_tag(dir.path()).unwrap();
    assert!(first.starts_with("e2e-") && first.len() == 20, "{first}");
    assert_eq!(plan::content_tag(dir.path()).unwrap(), first, "stable");
    // Build output does not change the tag; a source change does.
    std::fs::write(dir.path().join("target/debug/gateway"), "binary").unwrap();
    assert_eq!(plan::content_tag(dir.path()).unwrap(), first);
    std::fs::write(dir.path().join("gateway/src/main.rs"), "fn main() { }").unwrap();
    let second = plan::content_tag(dir.path()).unwrap();
    assert_ne!(second, first, "a changed tree gets a new tag");

    // The applied manifest runs the content-tagged images.
    let built = ImageRefs::load(&root().join(plan::IMAGES_ENV)).unwrap();
    let tagged = built.with_tag(&second);
    let manifest = built.retag(&rendered(), &tagged);
    for reference in built.by_name.values() {
        assert!(
            !manifest.contains(&format!("image: {reference}\n")),
            "{reference} left"
        );
    }
    for reference in tagged.by_name.values() {
        assert!(
            manifest.contains(&format!("image: {reference}\n")),
            "{reference} missing"
        );
    }
}

#[test]
fn api_server_429s_are_summed_from_its_metrics() {
    let metrics = concat!(
        "# HELP apiserver_request_total Counter of apiserver requests\n",
        "apiserver_request_total{code=\"201\",resource=\"leases\",verb=\"POST\"} 5000\n",
        "apiserver_request_total{code=\"429\",resource=\"leases\",verb=\"POST\"} 12\n",
        "apiserver_request_total{code=\"429\",resource=\"remediationrequests\",verb=\"POST\"} 3\n",
        "apiserver_request_duration_seconds_count{code=\"429\"} 99\n",
    );
    assert_eq!(e2e::platform::kind::throttled_requests(metrics), 15);
}
