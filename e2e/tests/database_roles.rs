//! The shipped manifests split the database roles: the DataStorage pods serve
//! as a role that cannot rewrite chains, only `migrate` runs as the owner, and
//! nothing of DataStorage connects as the postgres image's superuser.

use e2e::preflight::configs::{datastorage_config, mounted_yaml};
use e2e::preflight::{self, Objects};
use k8s_openapi::api::core::v1::{Container, PodSpec};

const OVERLAYS: &[&str] = &[
    "deploy/base",
    "deploy/overlays/kind",
    "deploy/overlays/production",
];

/// Secrets a container reaches through its volumes and env.
fn secrets_of(spec: &PodSpec, c: &Container) -> Vec<String> {
    let mut out = Vec::new();
    for mount in c.volume_mounts.iter().flatten() {
        let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name);
        if let Some(name) = volume
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
        {
            out.push(name);
        }
    }
    for env in c.env.iter().flatten() {
        if let Some(r) = env
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            out.push(r.name.clone());
        }
    }
    out
}

#[test]
fn datastorage_serves_as_the_serving_role_and_migrates_as_the_owner() {
    for overlay in OVERLAYS {
        let text = preflight::render(&preflight::repo_root().join(overlay)).unwrap();
        let objects = Objects::parse(&text).unwrap();
        let w = objects
            .workloads()
            .into_iter()
            .find(|w| w.name == "datastorage")
            .unwrap();
        let serving = &w.spec.containers[0];
        let config = mounted_yaml(&objects, &w, serving)
            .into_iter()
            .find_map(datastorage_config)
            .expect("DataStorage's ConfigMap parses");
        let pg = &config.store.postgres;
        assert_eq!(
            pg.user, "audit_app",
            "{overlay}: pods serve as the serving role"
        );
        assert_eq!(pg.serving_role.as_deref(), Some("audit_app"), "{overlay}");
        assert!(
            !pg.migrate_on_start && !pg.manage_partitions,
            "{overlay}: serving never migrates"
        );
        // Its TLS certificate (production's `datastorage-tls`) is no database credential.
        let credentials: Vec<_> = secrets_of(w.spec, serving)
            .into_iter()
            .filter(|s| *s != "datastorage-tls")
            .collect();
        assert_eq!(
            credentials,
            ["datastorage-db-serving"],
            "{overlay}: the serving container holds the serving password only"
        );
        let migrate = w.spec.init_containers.as_ref().unwrap();
        assert_eq!(
            migrate[0].args.as_deref(),
            Some(&["migrate".to_owned()][..])
        );
        assert_eq!(
            secrets_of(w.spec, &migrate[0]),
            ["datastorage-db-owner"],
            "{overlay}"
        );
        let owner_env = migrate[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "DATASTORAGE_STORE__POSTGRES__USER");
        assert_eq!(
            owner_env.and_then(|e| e.value.as_deref()),
            Some("audit_owner"),
            "{overlay}"
        );
        // The superuser's Secret is PostgreSQL's own business.
        for other in objects.workloads() {
            if other.name == "postgresql" {
                continue;
            }
            for c in other
                .spec
                .containers
                .iter()
                .chain(other.spec.init_containers.iter().flatten())
            {
                assert!(
                    !secrets_of(other.spec, c).contains(&"postgresql-credentials".to_owned()),
                    "{overlay}: {} {} reaches the superuser's password",
                    other.kind,
                    other.name
                );
            }
        }
        // The owner re-runs `migrate` (partitions ahead) on a schedule.
        assert!(
            text.contains("kind: CronJob") && text.contains("name: datastorage-migrate"),
            "{overlay}"
        );
        // PostgreSQL creates both roles at first start, without superuser rights.
        if *overlay == "deploy/base" {
            assert!(
                text.contains("NOSUPERUSER"),
                "the init script creates plain roles"
            );
        }
    }
}
