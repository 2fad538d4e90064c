//! The database role split: migrations as the schema owner, the service as a
//! serving role that can do its work and nothing that rewrites history.

use audit_sdk::AuditEvent;
use datastorage::domain::chain::ChainHasher;
use datastorage::store::EventStore;
use datastorage::testing::pg::{connect, PgCluster};

fn event(n: usize) -> AuditEvent {
    AuditEvent::builder("test.event", "corr-roles")
        .category("test")
        .action("act")
        .actor("service", "tester")
        .resource("thing", format!("r{n}"))
        .build()
}

#[tokio::test]
async fn the_serving_role_stores_and_holds_but_cannot_rewrite_or_hide_history() {
    let Some(cluster) = tokio::task::spawn_blocking(PgCluster::start_or_skip)
        .await
        .unwrap()
    else {
        return;
    };
    let admin = cluster.superuser().await.unwrap();
    for sql in [
        "CREATE ROLE audit_owner LOGIN",
        "CREATE ROLE audit_app LOGIN",
        "CREATE DATABASE audit OWNER audit_owner",
    ] {
        admin.batch_execute(sql).await.unwrap();
    }

    let (store, serving) = cluster
        .open_as_serving_role("audit", "audit_owner", "audit_app")
        .await
        .unwrap();
    let outcome = store
        .insert_batch((0..5).map(event).collect())
        .await
        .unwrap();
    assert_eq!(outcome.created, 5);
    store
        .place_legal_hold("corr-roles", "case", "alice")
        .await
        .unwrap();
    store
        .release_legal_hold("corr-roles", "closed", "alice")
        .await
        .unwrap()
        .unwrap();
    let (chain, head) = store.chain_with_head("corr-roles").await.unwrap();
    let report = ChainHasher::sha256().verify_with_head("corr-roles", &chain, head.as_ref());
    assert!(report.is_valid, "{report:?}");

    let app = connect(&serving).await.unwrap();
    let mut refused = 0;
    for sql in [
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "ALTER TABLE audit_events DETACH PARTITION audit_events_default",
        "DELETE FROM audit_events WHERE correlation_id = 'corr-roles'",
        "UPDATE audit_events SET event_data = '{}'",
        "DELETE FROM audit_chain_heads",
        "DELETE FROM audit_event_ids",
        "DROP TABLE legal_hold_history",
        "CREATE TABLE audit_events_y2099m01 PARTITION OF audit_events \
         FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')",
    ] {
        let err = app
            .batch_execute(sql)
            .await
            .expect_err(&format!("the serving role must not run {sql}"));
        let code = err.code().map(|c| c.code().to_owned()).unwrap_or_default();
        assert_eq!(code, "42501", "{sql}: {err:?}");
        refused += 1;
    }
    println!(
        "serving role: 5 events stored, hold placed and released, {refused} statements refused"
    );
    assert_eq!(store.chain("corr-roles").await.unwrap().len(), 5);
}
