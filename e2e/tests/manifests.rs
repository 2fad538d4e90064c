//! What the deployment must show, over `kubectl kustomize` of the base, Kind
//! and production: routing that does not hide readiness, a Gateway that
//! scales with one spool per Pod, disruption budgets, probe budgets that
//! cover DataStorage's wait for PostgreSQL, and the Gateway's audience-bound
//! DataStorage token.

use audit_sdk::names::{DATA_STORAGE_SERVICE, DATA_STORAGE_TOKEN_PATH};
use e2e::preflight::configs::{datastorage_config, mounted_yaml};
use e2e::preflight::probes::budget_seconds;
use e2e::preflight::{self, Objects};
use serde_yaml::Value;

const OVERLAYS: &[&str] = &[
    "deploy/base",
    "deploy/overlays/kind",
    "deploy/overlays/production",
];

fn rendered(overlay: &str) -> String {
    preflight::render(&preflight::repo_root().join(overlay)).unwrap()
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn no_overlay_publishes_not_ready_addresses() {
    for overlay in OVERLAYS {
        let text = rendered(overlay);
        assert!(
            !text.contains("publishNotReadyAddresses"),
            "{overlay} publishes not-ready Pods: a Service must route by readiness"
        );
    }
}

#[test]
fn the_gateway_is_a_stateful_set_with_a_spool_claim_per_pod_and_two_replicas() {
    for overlay in OVERLAYS {
        let objects = Objects::parse(&rendered(overlay)).unwrap();
        assert!(
            !objects
                .deployments
                .iter()
                .any(|d| d.metadata.name.as_deref() == Some("gateway")),
            "{overlay}: the Gateway must not be a Deployment"
        );
        let gateway = objects
            .stateful_sets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some("gateway"))
            .unwrap_or_else(|| panic!("{overlay}: no StatefulSet gateway"));
        let spec = &gateway.spec;
        assert!(
            spec.replicas.unwrap_or(1) >= 2,
            "{overlay}: replicas {:?}",
            spec.replicas
        );
        let claims: Vec<&str> = spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        let pod = spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        let spool_mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == "/var/spool/audit")
            .unwrap_or_else(|| panic!("{overlay}: no spool mount"));
        assert!(
            claims.contains(&spool_mount.name.as_str()),
            "{overlay}: the spool ({}) must come from volumeClaimTemplates {claims:?}",
            spool_mount.name
        );
        assert!(
            !pod.volumes
                .iter()
                .flatten()
                .any(|v| v.name == spool_mount.name),
            "{overlay}: a shared spool volume"
        );
        let spread = pod.topology_spread_constraints.iter().flatten();
        assert!(
            spread
                .into_iter()
                .any(|t| t.topology_key == "kubernetes.io/hostname"),
            "{overlay}: Gateway Pods must spread across nodes"
        );
        assert!(
            !objects.kinds.contains_key("PersistentVolumeClaim"),
            "{overlay}: a standalone (shared) PersistentVolumeClaim"
        );
    }
}

#[test]
fn gateway_and_datastorage_have_disruption_budgets_and_spread() {
    for overlay in OVERLAYS {
        let docs = documents(&rendered(overlay));
        let budgets = of_kind(&docs, "PodDisruptionBudget");
        for app in ["gateway", "datastorage"] {
            assert!(
                budgets
                    .iter()
                    .any(|b| b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == app),
                "{overlay}: no PodDisruptionBudget selecting {app}"
            );
        }
        let ds = of_kind(&docs, "Deployment")
            .into_iter()
            .find(|d| d["metadata"]["name"] == "datastorage")
            .unwrap();
        assert!(
            ds["spec"]["template"]["spec"]["topologySpreadConstraints"]
                .as_sequence()
                .is_some_and(|s| !s.is_empty()),
            "{overlay}: DataStorage Pods must spread"
        );
    }
}

#[test]
fn datastorage_probe_budget_covers_startup_timeout_and_postgres_has_a_startup_probe() {
    for overlay in OVERLAYS {
        let objects = Objects::parse(&rendered(overlay)).unwrap();
        let w = objects
            .workloads()
            .into_iter()
            .find(|w| w.name == "datastorage")
            .unwrap();
        let c = &w.spec.containers[0];
        let config = mounted_yaml(&objects, &w, c)
            .into_iter()
            .find_map(datastorage_config)
            .expect("DataStorage's ConfigMap parses");
        let timeout = config.store.postgres.startup_timeout.as_secs();
        let budget = budget_seconds(c.startup_probe.as_ref().expect("startupProbe"));
        assert!(
            budget >= i64::try_from(timeout).unwrap(),
            "{overlay}: startupProbe allows {budget} s < startup_timeout {timeout} s"
        );
        let pg = objects
            .workloads()
            .into_iter()
            .find(|w| w.name == "postgresql")
            .unwrap();
        assert!(
            pg.spec.containers[0].startup_probe.is_some(),
            "{overlay}: PostgreSQL needs a startupProbe for crash recovery"
        );
    }
}

#[test]
fn the_gateway_presents_an_audience_bound_token_to_datastorage() {
    for overlay in OVERLAYS {
        let objects = Objects::parse(&rendered(overlay)).unwrap();
        let w = objects
            .workloads()
            .into_iter()
            .find(|w| w.name == "gateway")
            .unwrap();
        let c = &w.spec.containers[0];
        let config = mounted_yaml(&objects, &w, c).join("\n");
        let config: Value = serde_yaml::from_str(&config).unwrap();
        assert_eq!(
            config["audit"]["token_file"], DATA_STORAGE_TOKEN_PATH,
            "{overlay}"
        );
        let dir = DATA_STORAGE_TOKEN_PATH.rsplit_once('/').unwrap().0;
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == dir)
            .unwrap_or_else(|| panic!("{overlay}: nothing mounted at {dir}"));
        let volume = w
            .spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        let token = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .find_map(|s| s.service_account_token.as_ref())
            .unwrap_or_else(|| panic!("{overlay}: {} is not a projected token", mount.name));
        assert_eq!(
            token.audience.as_deref(),
            Some(DATA_STORAGE_SERVICE),
            "{overlay}"
        );
        assert_eq!(token.path, "token");
    }
}

#[test]
fn production_ships_no_development_secret_and_restricts_traffic() {
    let docs = documents(&rendered("deploy/overlays/production"));
    assert!(
        of_kind(&docs, "Secret").is_empty(),
        "production must not commit a Secret (create postgresql-credentials out of band)"
    );
    let policies = of_kind(&docs, "NetworkPolicy");
    let policy_for = |app: &str| {
        policies
            .iter()
            .find(|p| p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == app)
            .unwrap_or_else(|| panic!("no NetworkPolicy for {app}"))
    };
    let pg_from = &policy_for("postgresql")["spec"]["ingress"][0]["from"];
    assert_eq!(
        pg_from.as_sequence().unwrap().len(),
        1,
        "only DataStorage reaches PostgreSQL"
    );
    assert_eq!(
        pg_from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "datastorage"
    );
    let api_from = &policy_for("datastorage")["spec"]["ingress"][0];
    assert_eq!(api_from["ports"][0]["port"], "api");
    let sources: Vec<String> = api_from["from"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| serde_yaml::to_string(&f["podSelector"]["matchLabels"]).unwrap())
        .collect();
    assert_eq!(
        sources.len(),
        2,
        "the Gateway and declared clients: {sources:?}"
    );
    assert!(
        policies.iter().any(
            |p| p["spec"]["podSelector"] == Value::Mapping(Default::default())
                && p["spec"]["ingress"].is_null()
        ),
        "a default-deny policy"
    );
    for doc in of_kind(&docs, "Deployment")
        .into_iter()
        .chain(of_kind(&docs, "StatefulSet"))
    {
        for c in doc["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .unwrap()
        {
            let image = c["image"].as_str().unwrap();
            assert!(!image.starts_with("localhost/"), "{image}");
            assert!(
                c["resources"]["requests"].is_mapping(),
                "{image}: resources"
            );
        }
    }
}

#[test]
fn the_kind_cluster_config_is_the_suite_cluster_local_only_and_pinned() {
    let text =
        std::fs::read_to_string(preflight::repo_root().join("deploy/kind/cluster.yaml")).unwrap();
    let cluster: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(cluster["name"], e2e::platform::kind::DEFAULT_CLUSTER_NAME);
    assert_eq!(cluster["networking"]["apiServerAddress"], "127.0.0.1");
    for node in cluster["nodes"].as_sequence().unwrap() {
        let image = node["image"].as_str().expect("kindest/node pinned");
        assert!(
            image.starts_with("kindest/node:v") && image.contains("@sha256:"),
            "{image}"
        );
        for m in node["extraPortMappings"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            assert_eq!(m["listenAddress"], "127.0.0.1", "{m:?}");
        }
    }
    // Every NodePort pinned in the static band (the API server's dynamic
    // allocations stay above it): 30000 + min(max(16, 2768/32), 128) - 1.
    let objects = Objects::parse(&rendered("deploy/overlays/kind")).unwrap();
    for s in &objects.services {
        let spec = s.spec.as_ref().unwrap();
        if spec.type_.as_deref() != Some("NodePort") {
            continue;
        }
        for p in spec.ports.iter().flatten() {
            let port = p
                .node_port
                .unwrap_or_else(|| panic!("{:?} {:?}: unpinned NodePort", s.metadata.name, p.name));
            assert!(
                (30000..=30085).contains(&port),
                "{:?}: {port} in the dynamic band",
                s.metadata.name
            );
        }
    }
}
