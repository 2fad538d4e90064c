//! `GET /api/v1/audit/export` and `datastorage verify-export FILE`: an export
//! from a running server (SQLite and PostgreSQL, read in chunks of 2 rows so
//! chains cross chunk boundaries) verifies offline with the public key only,
//! and each kind of edit to the file is named: a flipped field, a deleted
//! event, two events swapped, a changed signature.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use datastorage::config::{Backend, Config};
use datastorage::testing::pg::PgCluster;
use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey};
use serde_json::{json, Value};

/// An Ed25519 signing key file and its public key file.
fn ed25519_keys(dir: &Path) -> (PathBuf, PathBuf) {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[17; 32]);
    let private = dir.join("signer.pem");
    std::fs::write(
        &private,
        signing.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let public = dir.join("signer.pub.pem");
    std::fs::write(
        &public,
        signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    (private, public)
}

/// Runs `datastorage verify-export FILE ARGS` with an empty configuration
/// (no keys but the ones given); exit code and output.
fn verify_export(dir: &Path, file: &Path, args: &[&str]) -> (i32, String) {
    let config = dir.join("empty.yaml");
    std::fs::write(&config, "{}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .arg("--config")
        .arg(&config)
        .arg("verify-export")
        .arg(file)
        .args(args)
        .env("DATASTORAGE_LOG__LEVEL", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Writes `doc` to a file and verifies it with the public key.
fn check(dir: &Path, name: &str, doc: &Value, public: &Path) -> (i32, String) {
    let file = dir.join(name);
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    verify_export(dir, &file, &["--public-key", public.to_str().unwrap()])
}

/// The output line of a finding `kind` naming `what` (an event id or correlation).
fn names(out: &str, kind: &str, what: &str) -> bool {
    out.lines()
        .any(|l| l.split_whitespace().next() == Some(kind) && l.contains(what))
}

/// Index in the export's events of `correlation_id`'s event `chain_seq`.
fn position(doc: &Value, correlation_id: &str, chain_seq: i64) -> usize {
    doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["correlation_id"] == correlation_id && e["chain_seq"] == chain_seq)
        .unwrap()
}

async fn export(app: &TestApp, query: &str) -> (u16, Value) {
    app.get_json(&format!("/api/v1/audit/export?{query}")).await
}

async fn exports_verify_offline_and_name_each_edit(app: &TestApp, public: &Path, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (format!("exp-{tag}-a"), format!("exp-{tag}-b"));
    assert_eq!(app.post_batch(&events(&a, 5)).await.status(), 201);
    assert_eq!(app.post_batch(&events(&b, 3)).await.status(), 201);

    // Filtered to the two correlations by category and a time window.
    let (status, doc) = export(
        app,
        &format!("event_category=gateway&start_time=1h&include_detached_signature=true&correlation_id={a}"),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["export_metadata"]["total_events"], 5, "{doc}");
    assert_eq!(doc["export_metadata"]["signature_algorithm"], "ed25519");
    assert_eq!(doc["hash_chain_verification"]["broken_chain_events"], 0);
    assert!(doc["detached_signature"]
        .as_str()
        .is_some_and(|s| s.contains("Algorithm: ed25519")));
    let chain = &doc["chains"][0];
    assert_eq!(
        (
            chain["first_chain_seq"].as_i64(),
            chain["last_chain_seq"].as_i64()
        ),
        (Some(1), Some(5)),
        "{chain}"
    );
    assert_eq!(chain["head"]["chain_seq"], 5, "the store's head: {chain}");
    let seqs: Vec<i64> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["chain_seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "chain order across chunks of 2");

    let (code, out) = check(dir.path(), "intact.json", &doc, public);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signature valid (ed25519"), "{out}");

    // A flipped field of one event: that event is named, nothing else.
    let mut flipped = doc.clone();
    let i = position(&doc, &a, 3);
    flipped["events"][i]["resource_id"] = json!("payments/someone-else");
    let id = doc["events"][i]["event_id"].as_str().unwrap();
    let (code, out) = check(dir.path(), "flipped.json", &flipped, public);
    assert_eq!(code, 1, "{out}");
    assert!(names(&out, "content_modified", id), "{out}");
    assert_eq!(out.matches("content_modified").count(), 1, "{out}");

    // A deleted event: its chain_seq is named as missing.
    let mut deleted = doc.clone();
    let i = position(&doc, &a, 2);
    deleted["events"].as_array_mut().unwrap().remove(i);
    let (code, out) = check(dir.path(), "deleted.json", &deleted, public);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("missing_events")
            && l.contains(&a)
            && l.contains("chain_seq 2 ")),
        "{out}"
    );
    // The last event deleted: the chain's end is named.
    let mut tail = doc.clone();
    tail["events"].as_array_mut().unwrap().pop();
    let (code, out) = check(dir.path(), "tail.json", &tail, public);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("missing_events") && l.contains("at the chain's end")),
        "{out}"
    );

    // Two events swapped: the one that comes too late is named as reordered.
    let mut swapped = doc.clone();
    let (i, j) = (position(&doc, &a, 3), position(&doc, &a, 4));
    swapped["events"].as_array_mut().unwrap().swap(i, j);
    let moved = doc["events"][i]["event_id"].as_str().unwrap();
    let (code, out) = check(dir.path(), "swapped.json", &swapped, public);
    assert_eq!(code, 1, "{out}");
    assert!(names(&out, "reordered", moved), "{out}");
    assert!(!out.contains("content_modified"), "{out}");

    // A changed signature is refused (exit 2), and so is a digest that no
    // longer matches the events (an event's proof field rewritten).
    let mut forged = doc.clone();
    let sig = forged["export_metadata"]["signature"].as_str().unwrap();
    let other = if sig.starts_with('A') { "B" } else { "A" };
    forged["export_metadata"]["signature"] = json!(format!("{other}{}", &sig[1..]));
    let (code, out) = check(dir.path(), "forged.json", &forged, public);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("signature REFUSED"), "{out}");
    let mut relegal = doc.clone();
    relegal["events"][0]["legal_hold"] = json!(true);
    let (code, out) = check(dir.path(), "relegal.json", &relegal, public);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("signature REFUSED"), "{out}");

    // Another key is refused; no key at all cannot vouch for an Ed25519 export.
    let stranger = dir.path().join("stranger.pub.pem");
    std::fs::write(
        &stranger,
        ed25519_dalek::SigningKey::from_bytes(&[3; 32])
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let (code, out) = check(dir.path(), "stranger.json", &doc, &stranger);
    assert_eq!(code, 2, "{out}");

    // offset/limit page in (correlation_id, chain_seq) order; a page that
    // starts inside a chain verifies too.
    let (status, all) = export(app, "start_time=1h&limit=10000").await;
    assert_eq!(status, 200, "{all}");
    let (status, page) = export(app, "start_time=1h&offset=2&limit=4").await;
    assert_eq!(status, 200, "{page}");
    let want: Vec<&Value> = all["events"].as_array().unwrap()[2..6].iter().collect();
    let got: Vec<&Value> = page["events"].as_array().unwrap().iter().collect();
    assert_eq!(
        got.iter().map(|e| &e["event_id"]).collect::<Vec<_>>(),
        want.iter().map(|e| &e["event_id"]).collect::<Vec<_>>()
    );
    let (code, out) = check(dir.path(), "page.json", &page, public);
    assert_eq!(code, 0, "{out}");
}

fn signed_app(c: &mut Config, private: &Path) {
    c.chain.checkpoint_signing_key_file = Some(private.to_owned());
    c.chain.verify_chunk_size = 2;
}

#[tokio::test]
async fn an_export_verifies_offline_and_each_edit_is_named_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = ed25519_keys(dir.path());
    let app = spawn_app_with(|c| signed_app(c, &private)).await;
    exports_verify_offline_and_name_each_edit(&app, &public, "sqlite").await;
}

#[tokio::test]
async fn an_export_verifies_offline_and_each_edit_is_named_on_postgres() {
    let Some(cluster) = tokio::task::spawn_blocking(PgCluster::start_or_skip)
        .await
        .unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = ed25519_keys(dir.path());
    let pg = cluster.default_config();
    let app = spawn_app_with(|c| {
        signed_app(c, &private);
        c.store.backend = Backend::Postgres;
        c.store.postgres = pg;
        c.store.postgres.connect_timeout = Duration::from_secs(2);
    })
    .await;
    exports_verify_offline_and_name_each_edit(&app, &public, "postgres").await;
}

/// A row edited in the database is flagged by the server's own check at
/// export time (and then by the offline check of the file).
#[tokio::test]
async fn a_row_edited_in_the_database_is_flagged_in_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = ed25519_keys(dir.path());
    let app = spawn_app_with(|c| signed_app(c, &private)).await;
    let corr = "exp-db-edit";
    assert_eq!(app.post_batch(&events(corr, 3)).await.status(), 201);
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.execute_batch("DROP TRIGGER IF EXISTS audit_events_immutable")
        .unwrap();
    conn.execute(
        "UPDATE audit_events SET resource_id = 'edited' WHERE correlation_id = ?1 AND chain_seq = 2",
        [corr],
    )
    .unwrap();
    let (status, doc) = export(&app, &format!("correlation_id={corr}")).await;
    assert_eq!(status, 200, "{doc}");
    let edited = doc["events"][1]["event_id"].clone();
    assert_eq!(doc["events"][1]["hash_chain_valid"], false, "{doc}");
    assert_eq!(doc["events"][0]["hash_chain_valid"], true);
    let check_ = &doc["hash_chain_verification"];
    assert_eq!(check_["broken_chain_events"], 1, "{check_}");
    assert_eq!(check_["tampered_event_ids"], json!([edited]), "{check_}");
    let (code, out) = check(dir.path(), "edited.json", &doc, &public);
    assert_eq!(code, 1, "{out}");
    assert!(
        names(&out, "content_modified", edited.as_str().unwrap()),
        "{out}"
    );
}

/// An HMAC-keyed store signs its exports with the chain key; the key file
/// verifies them (chain hashes and signature), another key does not.
#[tokio::test]
async fn an_hmac_signed_export_verifies_with_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("chain.key");
    std::fs::write(&key, "a chain key of some length").unwrap();
    let app = spawn_app_with(|c| c.chain.hmac_key_file = Some(key.clone())).await;
    assert_eq!(app.post_batch(&events("exp-hmac", 3)).await.status(), 201);
    let (status, doc) = export(&app, "correlation_id=exp-hmac").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["export_metadata"]["signature_algorithm"], "hmac-sha256");
    let file = dir.path().join("hmac.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let (code, out) = verify_export(
        dir.path(),
        &file,
        &["--hmac-key-file", key.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    let other = dir.path().join("other.key");
    std::fs::write(&other, "another key").unwrap();
    let (code, out) = verify_export(
        dir.path(),
        &file,
        &["--hmac-key-file", other.to_str().unwrap()],
    );
    assert_ne!(code, 0, "{out}");
    assert!(names(&out, "unknown_key", "exp-hmac"), "{out}");
}

/// `redact_pii` masks personal data; masked events say so, and the file still
/// verifies (their places in the chain and the signature are checked).
#[tokio::test]
async fn redacted_exports_mask_personal_data_and_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = ed25519_keys(dir.path());
    let app = spawn_app_with(|c| signed_app(c, &private)).await;
    let mut e = event("exp-pii", 0);
    e["event_data"]["user_email"] = json!("jane.doe@example.org");
    e["event_data"]["source_ip"] = json!("10.1.2.3");
    assert_eq!(
        app.post_batch(&[e, event("exp-pii", 1)]).await.status(),
        201
    );
    let (status, doc) = export(&app, "correlation_id=exp-pii&redact_pii=true").await;
    assert_eq!(status, 200, "{doc}");
    let data = &doc["events"][0]["event_data"];
    assert_eq!(data["user_email"], "j***@e***.org", "{data}");
    assert_eq!(data["source_ip"], "10.*.*.*", "{data}");
    assert_eq!(doc["events"][0]["redacted"], true);
    assert!(doc["events"][1].get("redacted").is_none());
    assert_eq!(doc["export_metadata"]["query_filters"]["redact_pii"], true);
    let (code, out) = check(dir.path(), "redacted.json", &doc, &public);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 redacted"), "{out}");
}

/// The reference's bounds: limit above 10000 is a 413, bad values are 400s
/// naming every bad parameter, unknown parameters are ignored.
#[tokio::test]
async fn export_parameters_are_checked_as_the_reference_checks_them() {
    let app = spawn_app().await;
    let get = |q: &str| {
        app.client
            .get(app.url(&format!("/api/v1/audit/export?{q}")))
            .send()
    };
    assert_problem(get("limit=10001").await.unwrap(), 413, "payload-too-large").await;
    let body = assert_problem(
        get("start_time=yesterday&limit=0&format=csv&redact_pii=maybe")
            .await
            .unwrap(),
        400,
        "invalid-query",
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in ["start_time", "limit", "format", "redact_pii"] {
        assert!(fields.contains(&f), "{f} not named: {body}");
    }
    let (status, doc) = app
        .get_json("/api/v1/audit/export?include_archived=true&limit=10000")
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["export_metadata"]["total_events"], 0);
    assert_eq!(doc["export_metadata"]["exported_by"], "anonymous");
}
