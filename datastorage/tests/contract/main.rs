//! The reference platform's DataStorage contract, against our server on SQLite
//! and on PostgreSQL.
//!
//! Requests are shaped as the reference's generated client and its services
//! send them (fixtures under `fixtures/`: optional fields left out, `""` where
//! its Gateway sends it, fields we do not know, its time formats), and every
//! answer is checked as that client decodes it: the status must be one the
//! operation declares, and the body must validate against the JSON Schema of
//! the declared response (`schemas.rs`).
//!
//! Every case runs and every mismatch is collected, so one run lists every
//! difference. Operations of the reference we do not serve yet are listed in
//! [`PENDING`]: their cases are written and skipped (printed as skipped), so
//! they run the day the operation lands.

#[path = "../common/mod.rs"]
mod common;
mod schemas;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::*;
use datastorage::config::Backend;
use datastorage::testing::pg::PgCluster;
use serde_json::{json, Value};

/// Operations of the reference whose server side is not served yet (their
/// cases are written and skipped). Every operation is served today.
const PENDING: &[&str] = &[];

/// The statuses each operation of the reference declares.
fn declared(operation: &str) -> &'static [u16] {
    match operation {
        "createAuditEvent" => &[201, 202, 400, 401, 403, 500],
        "createAuditEventsBatch" => &[201],
        "queryAuditEvents" => &[200],
        "placeLegalHold" | "releaseLegalHold" => &[200, 400, 401, 404],
        "listLegalHolds" => &[200],
        "verifyAuditChain" => &[200, 400, 500],
        "exportAuditEvents" => &[200, 400, 401, 413],
        other => panic!("unknown operation {other}"),
    }
}

/// A fixture with its placeholders filled in.
fn fixture(name: &str, corr: &str, extra: &[(&str, &str)]) -> Value {
    let path = format!(
        "{}/tests/contract/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    // The reference's client writes RFC 3339 timestamps with whole seconds.
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("__NOW__", &now)
        .replace("__TODAY__", &Utc::now().date_naive().to_string())
        .replace("__CORR__", corr);
    for (placeholder, value) in extra {
        text = text.replace(placeholder, value);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Suite<'a> {
    app: &'a TestApp,
    backend: &'static str,
    operations: BTreeSet<&'static str>,
    cases: usize,
    skipped: usize,
    failures: Vec<String>,
}

impl<'a> Suite<'a> {
    fn new(app: &'a TestApp, backend: &'static str) -> Self {
        Self {
            app,
            backend,
            operations: BTreeSet::new(),
            cases: 0,
            skipped: 0,
            failures: Vec::new(),
        }
    }

    /// Sends one request and checks its answer; returns the body when the
    /// status was the expected one (so later cases can build on it).
    async fn case(
        &mut self,
        operation: &'static str,
        name: &str,
        request: reqwest::RequestBuilder,
        status: u16,
        schema: Value,
    ) -> Option<Value> {
        if PENDING.contains(&operation) {
            self.skipped += 1;
            println!(
                "[{}] SKIP {operation}: {name} (pending: not served yet)",
                self.backend
            );
            return None;
        }
        self.operations.insert(operation);
        self.cases += 1;
        let label = format!("[{}] {operation}: {name}", self.backend);
        assert!(
            declared(operation).contains(&status),
            "{label}: expects an undeclared {status}"
        );
        let resp = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.failures.push(format!("{label}: request failed: {e}"));
                return None;
            }
        };
        let got = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if got != status {
            let undeclared = if declared(operation).contains(&got) {
                ""
            } else {
                " (undeclared: a strict client cannot decode it)"
            };
            self.failures.push(format!(
                "{label}: status {got}{undeclared}, want {status}: {body}"
            ));
            return None;
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the suite's schemas compile");
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if !errors.is_empty() {
            self.failures.push(format!(
                "{label}: answer does not decode: {}; body {body}",
                errors.join("; ")
            ));
            return None;
        }
        println!("{label}: ok");
        Some(body)
    }

    /// A check on an answer beyond its schema (the values a reader relies on).
    fn expect(&mut self, label: &str, ok: bool, detail: impl std::fmt::Display) {
        if !ok {
            self.failures
                .push(format!("[{}] {label}: {detail}", self.backend));
        }
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.app.client.post(self.app.url(path)).json(body)
    }

    fn delete(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.app.client.delete(self.app.url(path)).json(body)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.app.client.get(self.app.url(path))
    }

    fn finish(self) {
        println!(
            "[{}] contract suite: {} operations ({}), {} cases run, {} skipped (pending: {}), {} failed",
            self.backend,
            self.operations.len(),
            self.operations.iter().copied().collect::<Vec<_>>().join(", "),
            self.cases,
            self.skipped,
            PENDING.join(", "),
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "contract mismatches:\n{}",
            self.failures.join("\n")
        );
    }
}

async fn run(app: &TestApp, backend: &'static str) {
    let mut s = Suite::new(app, backend);
    let corr = format!("rr-contract-{backend}-{}", uuid::Uuid::now_v7().simple());
    let events = "/api/v1/audit/events";

    // --- createAuditEvent -------------------------------------------------
    let node_alert = fixture("gateway_signal_received_node.json", &corr, &[]);
    let created = s
        .case(
            "createAuditEvent",
            "Gateway Node alert with namespace \"\"",
            s.post(events, &node_alert),
            201,
            schemas::audit_event_response(),
        )
        .await;
    let parent_id = created
        .as_ref()
        .and_then(|b| b["event_id"].as_str())
        .unwrap_or("00000000-0000-7000-8000-000000000000")
        .to_owned();
    if let Some(b) = &created {
        s.expect(
            "createAuditEvent message",
            b["message"].as_str().is_some_and(|m| !m.is_empty()),
            format!("message must say what happened: {b}"),
        );
    }
    s.case(
        "createAuditEvent",
        "no actor_*/resource_* fields, unknown fields, cluster_name \"\"",
        s.post(
            events,
            &fixture("orchestrator_lifecycle_started_minimal.json", &corr, &[]),
        ),
        201,
        schemas::audit_event_response(),
    )
    .await;
    s.case(
        "createAuditEvent",
        "parent_event_id with parent_event_date, severity \"\"",
        s.post(
            events,
            &fixture(
                "orchestrator_lifecycle_completed_child.json",
                &corr,
                &[("__PARENT__", &parent_id)],
            ),
        ),
        201,
        schemas::audit_event_response(),
    )
    .await;
    s.case(
        "createAuditEvent",
        "missing correlation_id is a 400 problem",
        s.post(
            events,
            &fixture("invalid_missing_correlation_id.json", &corr, &[]),
        ),
        400,
        schemas::problem(),
    )
    .await;

    // --- createAuditEventsBatch ------------------------------------------
    let batch_corr = format!("{corr}-batch");
    if let Some(b) = s
        .case(
            "createAuditEventsBatch",
            "three families, one without actor_*/resource_*",
            s.post(
                &format!("{events}/batch"),
                &fixture("batch_mixed.json", &batch_corr, &[]),
            ),
            201,
            schemas::batch_audit_event_response(),
        )
        .await
    {
        s.expect(
            "batch event_ids",
            b["event_ids"].as_array().map(Vec::len) == Some(3),
            &b,
        );
    }

    // --- queryAuditEvents --------------------------------------------------
    let q = |query: &str| format!("{events}?correlation_id={corr}&{query}");
    if let Some(page) = s
        .case(
            "queryAuditEvents",
            "offset 0, limit 2",
            s.get(&q("limit=2&offset=0")),
            200,
            schemas::audit_events_query_response(),
        )
        .await
    {
        let p = &page["pagination"];
        s.expect("pagination.total", p["total"] == 3, p);
        s.expect("pagination.has_more", p["has_more"] == true, p);
        s.expect("pagination.offset", p["offset"] == 0, p);
        s.expect(
            "page size",
            page["data"].as_array().map(Vec::len) == Some(2),
            p,
        );
    }
    if let Some(page) = s
        .case(
            "queryAuditEvents",
            "offset 2, limit 2",
            s.get(&q("limit=2&offset=2")),
            200,
            schemas::audit_events_query_response(),
        )
        .await
    {
        let p = &page["pagination"];
        s.expect(
            "last page",
            page["data"].as_array().map(Vec::len) == Some(1) && p["has_more"] == false,
            p,
        );
        s.expect("pagination.total on the last page", p["total"] == 3, p);
    }
    if let Some(page) = s
        .case(
            "queryAuditEvents",
            "event_type filter; \"\" stored as sent",
            s.get(&q("event_type=gateway.signal.received")),
            200,
            schemas::audit_events_query_response(),
        )
        .await
    {
        let first = &page["data"][0];
        s.expect("namespace \"\" kept", first["namespace"] == "", first);
        s.expect(
            "event_data.namespace \"\" kept",
            first["event_data"]["namespace"] == "",
            first,
        );
    }
    if let Some(page) = s
        .case(
            "queryAuditEvents",
            "defaults for missing actor_*/resource_*",
            s.get(&q("event_type=orchestrator.lifecycle.started")),
            200,
            schemas::audit_events_query_response(),
        )
        .await
    {
        let e = &page["data"][0];
        s.expect(
            "reference defaults",
            e["actor_type"] == "service"
                && e["actor_id"] == "orchestration-service"
                && e["resource_type"] == "orchestration"
                && e["resource_id"] == corr.as_str(),
            e,
        );
    }
    let until =
        (Utc::now() + chrono::Duration::minutes(5)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let today = Utc::now().date_naive();
    let local_form = (Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    for (name, query) in [
        (
            "since as a Go duration (1h30m), until RFC 3339",
            format!("since=1h30m&until={until}"),
        ),
        ("since as a date (2006-01-02)", format!("since={today}")),
        (
            "since without a zone (2006-01-02T15:04:05)",
            format!("since={local_form}"),
        ),
        (
            "an unknown parameter is ignored",
            "include_archived=true&trace=1".to_owned(),
        ),
    ] {
        if let Some(page) = s
            .case(
                "queryAuditEvents",
                name,
                s.get(&q(&query)),
                200,
                schemas::audit_events_query_response(),
            )
            .await
        {
            s.expect(name, page["pagination"]["total"] == 3, &page["pagination"]);
        }
    }
    if let Some(page) = s
        .case(
            "queryAuditEvents",
            "detail_key/detail_value on event_data",
            s.get(&format!(
                "{events}?detail_key=signal_name&detail_value=NodeNotReady&correlation_id={corr}"
            )),
            200,
            schemas::audit_events_query_response(),
        )
        .await
    {
        let data = page["data"].as_array().cloned().unwrap_or_default();
        s.expect(
            "detail filter",
            data.len() == 1 && data[0]["event_data"]["signal_name"] == "NodeNotReady",
            &page["pagination"],
        );
    }

    // --- legal hold --------------------------------------------------------
    let hold_path = "/api/v1/audit/legal-hold";
    let hold_body = json!({"correlation_id": corr, "reason": "SEC investigation case #2026-017"});
    if let Some(b) = s
        .case(
            "placeLegalHold",
            "place",
            s.post(hold_path, &hold_body),
            200,
            schemas::legal_hold_placed(),
        )
        .await
    {
        s.expect("events_affected", b["events_affected"] == 3, &b);
    }
    s.case(
        "placeLegalHold",
        "place again (already held)",
        s.post(hold_path, &hold_body),
        200,
        schemas::legal_hold_placed(),
    )
    .await;
    s.case(
        "placeLegalHold",
        "missing reason is a 400 problem",
        s.post(hold_path, &json!({"correlation_id": corr})),
        400,
        schemas::problem(),
    )
    .await;
    if let Some(b) = s
        .case(
            "listLegalHolds",
            "list",
            s.get(hold_path),
            200,
            schemas::legal_hold_list(),
        )
        .await
    {
        let listed = b["holds"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| x["correlation_id"] == corr.as_str()));
        s.expect(
            "list names the hold",
            listed && b["total"].as_u64() == b["holds"].as_array().map(|h| h.len() as u64),
            &b,
        );
    }
    let release_body = json!({"release_reason": "case closed"});
    let release_path = format!("{hold_path}/{corr}");
    if let Some(b) = s
        .case(
            "releaseLegalHold",
            "release",
            s.delete(&release_path, &release_body),
            200,
            schemas::legal_hold_released(),
        )
        .await
    {
        s.expect("events_released", b["events_released"] == 3, &b);
    }
    s.case(
        "releaseLegalHold",
        "release when not held is a 404 problem",
        s.delete(&release_path, &release_body),
        404,
        schemas::problem(),
    )
    .await;

    // --- verifyAuditChain (pending) ------------------------------------------
    let verify = "/api/v1/audit/verify-chain";
    if let Some(b) = s
        .case(
            "verifyAuditChain",
            "an intact chain",
            s.post(verify, &json!({"correlation_id": corr})),
            200,
            schemas::verify_chain_response(),
        )
        .await
    {
        s.expect(
            "verified",
            b["is_valid"] == true && b["verified_events"] == 3,
            &b,
        );
    }
    if let Some(b) = s
        .case(
            "verifyAuditChain",
            "an unknown correlation is 200 with zero events",
            s.post(verify, &json!({"correlation_id": format!("{corr}-none")})),
            200,
            schemas::verify_chain_response(),
        )
        .await
    {
        s.expect("zero events", b["total_events"] == 0, &b);
    }
    s.case(
        "verifyAuditChain",
        "missing correlation_id is a 400 problem",
        s.post(verify, &json!({})),
        400,
        schemas::problem(),
    )
    .await;

    // --- exportAuditEvents -------------------------------------------------------
    if let Some(b) = s
        .case(
            "exportAuditEvents",
            "export one correlation",
            s.get(&format!(
                "/api/v1/audit/export?correlation_id={corr}&format=json"
            )),
            200,
            schemas::audit_export_response(),
        )
        .await
    {
        s.expect(
            "exported events",
            b["export_metadata"]["total_events"] == 3
                && b["events"].as_array().map(Vec::len) == Some(3)
                && b["hash_chain_verification"]["valid_chain_events"] == 3,
            &b["export_metadata"],
        );
    }
    if let Some(b) = s
        .case(
            "exportAuditEvents",
            "the reference client's full parameter set",
            s.get(&format!(
                "/api/v1/audit/export?start_time={since}&end_time={until}&event_category=orchestration\
                 &format=json&include_detached_signature=true&offset=0&limit=1000&redact_pii=false",
                since = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true),
            )),
            200,
            schemas::audit_export_response(),
        )
        .await
    {
        s.expect(
            "detached signature and category filter",
            b["detached_signature"].is_string()
                && b["events"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["event_category"] == "orchestration")),
            &b["export_metadata"],
        );
    }
    s.case(
        "exportAuditEvents",
        "limit above 10000 is a 413 problem",
        s.get("/api/v1/audit/export?limit=10001"),
        413,
        schemas::problem(),
    )
    .await;
    s.case(
        "exportAuditEvents",
        "an unparseable start_time is a 400 problem",
        s.get("/api/v1/audit/export?start_time=yesterday"),
        400,
        schemas::problem(),
    )
    .await;

    s.finish();
}

#[tokio::test]
async fn reference_client_contract_on_sqlite() {
    let app = spawn_app().await;
    run(&app, "sqlite").await;
}

#[tokio::test]
async fn reference_client_contract_on_postgres() {
    let Some(cluster) = tokio::task::spawn_blocking(PgCluster::start_or_skip)
        .await
        .unwrap()
    else {
        return;
    };
    let pg = cluster.default_config();
    let app = spawn_app_with(|c| {
        c.store.backend = Backend::Postgres;
        c.store.postgres = pg;
        c.store.postgres.connect_timeout = Duration::from_secs(2);
    })
    .await;
    run(&app, "postgres").await;
}

/// The schemas are strict enough to catch what a strict client cannot decode:
/// each answer this server gave before the contract work fails its schema.
#[test]
fn the_schemas_refuse_answers_a_strict_client_cannot_decode() {
    let fails = |schema: Value, body: Value| {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        assert!(!validator.is_valid(&body), "accepted {body}");
    };
    let id = "0190b6a4-3c4e-7000-8000-000000000001";
    // The single-event answer without the reference's required fields.
    fails(
        schemas::audit_event_response(),
        json!({"event_ids": [id], "created": 1, "duplicates": 0}),
    );
    fails(
        schemas::audit_event_response(),
        json!({"event_id": "not-a-uuid", "event_timestamp": "2026-01-01T00:00:00Z", "message": "m"}),
    );
    // A legal hold counted as `events_held`, a list without `total`, a release without `released_at`.
    fails(
        schemas::legal_hold_placed(),
        json!({"correlation_id": "c", "events_held": 1, "placed_by": "u", "placed_at": "2026-01-01T00:00:00Z", "reason": "r"}),
    );
    fails(schemas::legal_hold_list(), json!({"holds": []}));
    fails(
        schemas::legal_hold_released(),
        json!({"correlation_id": "c", "events_released": 1, "released_by": "u"}),
    );
    // A verify answer without verified_events, verification_time and message.
    fails(
        schemas::verify_chain_response(),
        json!({"correlation_id": "c", "is_valid": true, "total_events": 0, "tampered_events": []}),
    );
    // An event whose event_data has no discriminator, an unknown one, or misses a payload's required field.
    let event = |data: Value| {
        json!({"data": [{
            "version": "1.0", "event_type": "gateway.signal.received", "event_timestamp": "2026-01-01T00:00:00Z",
            "event_category": "gateway", "event_action": "received", "event_outcome": "success",
            "correlation_id": "c", "event_data": data
        }]})
    };
    fails(
        schemas::audit_events_query_response(),
        event(json!({"signal_name": "x"})),
    );
    fails(
        schemas::audit_events_query_response(),
        event(json!({"event_type": "gateway.unknown"})),
    );
    fails(
        schemas::audit_events_query_response(),
        event(
            json!({"event_type": "gateway.signal.received", "signal_name": "x", "namespace": "", "fingerprint": "f"}),
        ),
    );
    // An event_category outside the reference's enum.
    let mut bad_category = event(
        json!({"event_type": "gateway.signal.received", "signal_type": "alert", "signal_name": "x", "namespace": "", "fingerprint": "f"}),
    );
    assert!(jsonschema::is_valid(
        &schemas::audit_events_query_response(),
        &bad_category
    ));
    bad_category["data"][0]["event_category"] = json!("elsewhere");
    fails(schemas::audit_events_query_response(), bad_category);
    // A problem whose type is not a kubernaut.ai problem URI.
    fails(
        schemas::problem(),
        json!({"type": "about:blank", "title": "t", "status": 400}),
    );
}

/// Our own document says what the server answers the reference's calls.
#[test]
fn the_openapi_document_declares_the_reference_answers() {
    let doc = serde_json::to_value(datastorage::api::openapi::document()).unwrap();
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    let statuses = |v: &Value| -> Vec<String> {
        v["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let post = op("/api/v1/audit/events", "post");
    assert!(statuses(&post).contains(&"201".into()) && !statuses(&post).contains(&"200".into()));
    let place = op("/api/v1/audit/legal-hold", "post");
    assert!(statuses(&place).contains(&"200".into()) && !statuses(&place).contains(&"201".into()));
    let params: Vec<String> = op("/api/v1/audit/events", "get")["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    for name in [
        "offset",
        "detail_key",
        "detail_value",
        "limit",
        "cursor",
        "since",
    ] {
        assert!(
            params.contains(&name.to_owned()),
            "{name} missing from {params:?}"
        );
    }
    for path in [
        "/api/v1/audit/events/batch",
        "/api/v1/audit/verify-chain",
        "/api/v1/audit/legal-hold/{correlation_id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["EventCreated"].is_object());
    let export = op("/api/v1/audit/export", "get");
    for status in ["200", "400", "401", "413"] {
        assert!(
            statuses(&export).contains(&status.into()),
            "export lacks {status}"
        );
    }
    let export_params: Vec<&str> = export["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "start_time",
        "end_time",
        "correlation_id",
        "event_category",
        "format",
        "include_detached_signature",
        "offset",
        "limit",
        "redact_pii",
    ] {
        assert!(export_params.contains(&name), "export lacks {name}");
    }
    assert!(doc["components"]["schemas"]["AuditExport"].is_object());
}
