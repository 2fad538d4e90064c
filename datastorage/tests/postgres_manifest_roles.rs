//! The roles the shipped manifests create (`deploy/base/postgresql.yaml`,
//! ConfigMap `postgresql-init`), run for real: the first-start script through
//! `psql` against a throwaway cluster, `migrate` as the owner, then the
//! serving role serves and cannot rewrite events or checkpoints.

use std::process::Command;

use audit_sdk::AuditEvent;
use datastorage::checkpointer;
use datastorage::domain::chain::ChainHasher;
use datastorage::domain::checkpoint::CheckpointKeys;
use datastorage::store::EventStore;
use datastorage::testing::pg::{connect, find_bindir, PgCluster};

/// The `10-roles.sh` script of the shipped ConfigMap, as the image runs it.
fn init_script() -> String {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/base/postgresql.yaml"
    ))
    .unwrap();
    let start = manifest.find("10-roles.sh: |\n").expect("the init script") + 15;
    let end = start + manifest[start..].find("\n---").unwrap();
    manifest[start..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_manifest_roles_serve_but_cannot_rewrite_events_or_checkpoints() {
    let Some(cluster) = tokio::task::spawn_blocking(PgCluster::start_or_skip)
        .await
        .unwrap()
    else {
        return;
    };
    let admin = cluster.superuser().await.unwrap();
    // The image creates POSTGRES_DB before it runs the init scripts.
    admin.batch_execute("CREATE DATABASE audit").await.unwrap();
    let bindir = find_bindir().unwrap();
    let path = format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(init_script())
        .env("PATH", path)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.port().to_string())
        .env("POSTGRES_USER", "postgres")
        .env("POSTGRES_DB", "audit")
        .env("OWNER_USER", "audit_owner")
        .env("OWNER_PASSWORD", "owner-secret")
        .env("SERVING_USER", "audit_app")
        .env("SERVING_PASSWORD", "serving-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let supers: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('audit_owner', 'audit_app') AND NOT rolsuper",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(supers, 2, "both roles exist, neither is a superuser");

    let (store, serving) = cluster
        .open_as_serving_role("audit", "audit_owner", "audit_app")
        .await
        .unwrap();
    let events: Vec<AuditEvent> = (0..5)
        .map(|n| {
            AuditEvent::builder("test.event", "corr-manifest")
                .category("test")
                .action("act")
                .actor("service", "tester")
                .resource("thing", format!("r{n}"))
                .build()
        })
        .collect();
    assert_eq!(store.insert_batch(events).await.unwrap().created, 5);
    let keys = CheckpointKeys::new(ChainHasher::sha256());
    assert!(
        checkpointer::take(&store, &keys).await.unwrap().is_some(),
        "the serving role appends checkpoints"
    );

    let app = connect(&serving).await.unwrap();
    let mut refused = Vec::new();
    for sql in [
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "DELETE FROM audit_events",
        "UPDATE audit_events SET resource_id = 'x'",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_checkpoints SET summary = '{}'",
        "TRUNCATE audit_checkpoints",
        "DELETE FROM audit_chain_heads",
        "CREATE TABLE sneaky (id int)",
    ] {
        if app.batch_execute(sql).await.is_err() {
            refused.push(sql);
        }
    }
    assert_eq!(
        refused.len(),
        9,
        "the serving role was allowed some of these: refused only {refused:?}"
    );
    println!(
        "serving role refused {} rewriting statements",
        refused.len()
    );
}
