//! The property behind every ingest rule: any event validation accepts stores,
//! reads back with identical canonical bytes and verifies, on SQLite and on
//! PostgreSQL; whatever a backend could not store must be refused by validation.
//!
//! Events are generated as untrusted JSON (unicode and control characters,
//! escapes, NUL, big and small integers, floats, deep objects, every optional
//! field present or absent), parsed with the server's own `from_json`, and the
//! accepted ones stored in batches. The budget is fixed (cases below) and the
//! counts are printed.

use std::sync::Arc;

use audit_sdk::AuditEvent;
use chrono::Utc;
use datastorage::domain::canonical::canonical_json;
use datastorage::domain::chain::ChainHasher;
use datastorage::store::postgres::PostgresStore;
use datastorage::store::sqlite::{SqliteConfig, SqliteStore};
use datastorage::store::EventStore;
use datastorage::testing::pg::PgCluster;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

/// Generated events per backend.
const CASES: u32 = 64;

/// A field's text: mostly printable unicode, sometimes anything (control
/// characters, NUL) so the refusals are exercised too.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        60 => "\\PC{1,30}",
        10 => "[a-z0-9._-]{1,20}",
        1 => any::<String>(),
        1 => Just("nul\u{0}".to_owned()),
    ]
}

/// Text inside `event_data`: anything at all, escapes and NUL included.
fn data_text() -> impl Strategy<Value = String> {
    prop_oneof![
        60 => any::<String>(),
        1 => Just("\u{0}".to_owned()),
        6 => Just("\"\\\\/\u{8}\u{c}\n\r\t\u{7f}\u{2028}\u{fffd}\u{1f600}".to_owned()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!(9007199254740993u64)),
        Just(json!(1e-7)),
        Just(json!(-0.0)),
    ]
}

fn data_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        data_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(12, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(data_text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn optional(
    field: &'static str,
    value: impl Strategy<Value = Value>,
) -> impl Strategy<Value = Option<(&'static str, Value)>> {
    prop::option::of(value.prop_map(move |v| (field, v)))
}

fn event_json(correlation_id: String) -> impl Strategy<Value = Value> {
    let optionals = (
        optional(
            "actor_ip",
            prop_oneof![
                Just(json!("10.0.0.1")),
                Just(json!("::1")),
                text().prop_map(Value::from)
            ],
        ),
        optional("namespace", text().prop_map(Value::from)),
        optional("cluster_id", text().prop_map(Value::from)),
        optional("severity", text().prop_map(Value::from)),
        optional(
            "duration_ms",
            prop_oneof![8 => (0i64..i64::MAX).prop_map(Value::from), 1 => number()],
        ),
        optional("error_code", text().prop_map(Value::from)),
        optional("error_message", text().prop_map(Value::from)),
        optional("retention_days", (0u32..2600).prop_map(Value::from)),
        optional("is_sensitive", any::<bool>().prop_map(Value::from)),
        optional(
            "parent_event_id",
            Just(json!(uuid::Uuid::now_v7().to_string())),
        ),
    );
    let data = prop::collection::btree_map(data_text(), data_value(), 0..8);
    (
        text(),
        text(),
        text(),
        text(),
        data,
        optionals,
        -3_000i64..3_000,
    )
        .prop_map(
            move |(action, actor, resource, category, data, optionals, seconds)| {
                let ts = Utc::now() + chrono::Duration::seconds(seconds);
                let mut event = json!({
                    "event_id": uuid::Uuid::now_v7().to_string(),
                    "event_type": "test.property",
                    "event_timestamp": audit_sdk::timestamp::format(&ts),
                    "event_category": category,
                    "event_action": action,
                    "event_outcome": "success",
                    "actor_type": "service",
                    "actor_id": actor,
                    "resource_type": "thing",
                    "resource_id": resource,
                    "correlation_id": correlation_id.clone(),
                    "event_data": Value::Object(data.into_iter().collect::<Map<_, _>>()),
                });
                let (a, b, c, d, e, f, g, h, i, j) = optionals;
                for (field, value) in [a, b, c, d, e, f, g, h, i, j].into_iter().flatten() {
                    event[field] = value;
                }
                event
            },
        )
}

/// Runs the property against one store; returns (accepted, refused).
fn check(store: Arc<dyn EventStore>, backend: &str) -> (u32, u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hasher = ChainHasher::sha256();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let counts = std::cell::Cell::new((0u32, 0u32));
    let strategy = prop::collection::vec(event_json(format!("prop-{backend}")), 1..4);
    runner
        .run(&strategy, |values| {
            let now = Utc::now();
            let mut accepted = Vec::new();
            for value in values {
                let (a, r) = counts.get();
                match AuditEvent::from_json(value, now) {
                    Ok(event) => {
                        counts.set((a + 1, r));
                        accepted.push(event);
                    }
                    Err(_) => counts.set((a, r + 1)),
                }
            }
            if accepted.is_empty() {
                return Ok(());
            }
            rt.block_on(async {
                let outcome = store.insert_batch(accepted.clone()).await;
                let outcome = outcome.map_err(|e| {
                    TestCaseError::fail(format!(
                        "accepted events failed to store on {backend}: {e}"
                    ))
                })?;
                prop_assert_eq!(outcome.created, accepted.len());
                for event in &accepted {
                    let stored = store.get(event.event_id.unwrap()).await.unwrap().unwrap();
                    let (got, sent) = (canonical_json(&stored.event), canonical_json(event));
                    prop_assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&sent),
                        "{} read back differently",
                        backend
                    );
                }
                let chain = store.chain(&accepted[0].correlation_id).await.unwrap();
                let report = hasher.verify(&accepted[0].correlation_id, &chain);
                prop_assert!(
                    report.is_valid,
                    "{} chain does not verify: {:?}",
                    backend,
                    report
                );
                Ok(())
            })
        })
        .unwrap();
    let (accepted, refused) = counts.get();
    println!("{backend}: {CASES} cases, {accepted} events accepted, stored and verified, {refused} refused by validation");
    assert!(accepted > 0, "the generator must produce valid events too");
    (accepted, refused)
}

#[test]
fn sqlite_stores_and_verifies_every_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        path: dir.path().join("audit.db"),
        ..SqliteConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(SqliteStore::open(&config, ChainHasher::sha256()))
        .unwrap();
    check(Arc::new(store), "sqlite");
}

#[test]
fn postgres_stores_and_verifies_every_accepted_event() {
    let Some(cluster) = PgCluster::start_or_skip() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(PostgresStore::open(
            &cluster.default_config(),
            ChainHasher::sha256(),
        ))
        .unwrap();
    check(Arc::new(store), "postgres");
}
