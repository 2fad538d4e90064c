//! Signed checkpoints: exported from a running server, checked offline by
//! `datastorage verify --checkpoint FILE` against the real database after the
//! kinds of tampering someone with database access can do, on both backends.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use datastorage::config::{Backend, Config};
use datastorage::testing::pg::PgCluster;
use serde_json::Value;

/// The database the way an operator with its file or superuser password sees it.
enum Db<'a> {
    Sqlite(&'a Path),
    Postgres(&'a PgCluster),
}

impl Db<'_> {
    /// Runs `sql` with the triggers out of the way, as a superuser can.
    async fn tamper(&self, sql: &str) -> u64 {
        match self {
            Db::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch("DROP TRIGGER IF EXISTS audit_events_immutable")
                    .unwrap();
                conn.execute(sql, []).unwrap() as u64
            }
            Db::Postgres(cluster) => {
                let client = cluster.superuser().await.unwrap();
                client
                    .batch_execute("SET session_replication_role = replica")
                    .await
                    .unwrap();
                client.execute(sql, &[]).await.unwrap()
            }
        }
    }

    /// Whether `sql` is refused (the append-only triggers on checkpoints).
    async fn refused(&self, sql: &str) -> bool {
        match self {
            Db::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .execute(sql, [])
                .is_err(),
            Db::Postgres(cluster) => cluster
                .superuser()
                .await
                .unwrap()
                .execute(sql, &[])
                .await
                .is_err(),
        }
    }
}

/// Writes `config` where the CLI can read it (JSON is YAML).
fn write_config(dir: &Path, name: &str, config: &Config) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string(config).unwrap()).unwrap();
    path
}

/// Runs `datastorage verify --checkpoint FILE` (plus `extra`); exit code and stdout+stderr.
fn verify_offline(config: &Path, file: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .arg("--config")
        .arg(config)
        .arg("verify")
        .arg("--checkpoint")
        .arg(file)
        .args(extra)
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

/// Takes a checkpoint with `datastorage checkpoint`.
fn take_checkpoint(config: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_datastorage"))
        .arg("--config")
        .arg(config)
        .arg("checkpoint")
        .env("DATASTORAGE_LOG__LEVEL", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Lines of `verify`'s output naming `correlation_id` with `drift`.
fn names(output: &str, drift: &str, correlation_id: &str) -> bool {
    output.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(drift) && words.next() == Some(correlation_id)
    })
}

async fn tampering_since_a_checkpoint_is_named(app: &TestApp, db: Db<'_>, config: Config) {
    let dir = tempfile::tempdir().unwrap();
    for (corr, n) in [
        ("cp-tail", 20),
        ("cp-gone", 3),
        ("cp-edit", 5),
        ("cp-grow", 4),
        ("cp-kept", 2),
    ] {
        assert_eq!(app.post_batch(&events(corr, n)).await.status(), 201);
    }
    let config_file = write_config(dir.path(), "config.yaml", &config);
    let taken = take_checkpoint(&config_file);
    assert_eq!(taken["algorithm"], "hmac-sha256", "{taken}");
    assert_eq!(
        (taken["head_count"].as_u64(), taken["event_count"].as_u64()),
        (Some(5), Some(34))
    );

    // The server serves it: listed, and whole as the latest.
    let (status, list) = app.get_json("/api/v1/audit/checkpoints").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["checkpoints"][0]["checkpoint_id"],
        taken["checkpoint_id"]
    );
    assert!(list["checkpoints"][0].get("heads").is_none(), "{list}");
    let (status, latest) = app.get_json("/api/v1/audit/checkpoints/latest").await;
    assert_eq!(status, 200);
    assert_eq!(latest, taken);
    let id = taken["checkpoint_id"].as_str().unwrap();
    assert_eq!(
        app.get_json(&format!("/api/v1/audit/checkpoints/{id}"))
            .await
            .1,
        taken
    );
    let file = dir.path().join("checkpoint.json");
    std::fs::write(&file, serde_json::to_string_pretty(&latest).unwrap()).unwrap();

    let (code, out) = verify_offline(&config_file, &file, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signature valid"), "{out}");

    // Checkpoints are append-only.
    assert!(db.refused("DELETE FROM audit_checkpoints").await);
    assert!(
        db.refused("UPDATE audit_checkpoints SET summary = '{}'")
            .await
    );

    // Delete a tail, a whole correlation, edit a row, add rows.
    assert_eq!(
        db.tamper("DELETE FROM audit_events WHERE correlation_id = 'cp-tail' AND chain_seq > 10")
            .await,
        10
    );
    assert_eq!(
        db.tamper("DELETE FROM audit_events WHERE correlation_id = 'cp-gone'")
            .await,
        3
    );
    assert_eq!(
        db.tamper("UPDATE audit_events SET resource_id = 'nothing-to-see' WHERE correlation_id = 'cp-edit' AND chain_seq = 2").await,
        1
    );
    assert_eq!(app.post_batch(&events("cp-grow", 2)).await.status(), 201);
    assert_eq!(app.post_batch(&events("cp-new", 1)).await.status(), 201);

    let (code, out) = verify_offline(&config_file, &file, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(names(&out, "lost", "cp-tail"), "{out}");
    assert!(names(&out, "lost", "cp-gone"), "{out}");
    assert!(names(&out, "changed", "cp-edit"), "{out}");
    assert!(names(&out, "gained", "cp-grow"), "{out}");
    assert!(names(&out, "gained", "cp-new"), "{out}");
    assert!(
        !out.contains("cp-kept"),
        "an untouched chain is not named: {out}"
    );
    assert!(out.contains("5 correlations differ"), "{out}");

    // A growing store: events appended after the checkpoint that chain
    // correctly are accepted on request, the tampering is still named.
    let (code, out) = verify_offline(&config_file, &file, &["--allow-appended"]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("cp-grow") && !out.contains("cp-new"), "{out}");
    assert!(
        names(&out, "lost", "cp-tail") && names(&out, "changed", "cp-edit"),
        "{out}"
    );

    // A checkpoint file edited to hide the deletion is refused outright.
    let mut forged = latest.clone();
    for head in forged["heads"].as_array_mut().unwrap() {
        if head["correlation_id"] == "cp-tail" {
            head["chain_seq"] = 10.into();
        }
    }
    let forged_file = dir.path().join("forged.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    let (code, out) = verify_offline(&config_file, &forged_file, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("refused"), "{out}");
    let mut resigned = latest.clone();
    resigned["signature"] = "00".repeat(32).into();
    std::fs::write(&forged_file, resigned.to_string()).unwrap();
    let (code, out) = verify_offline(&config_file, &forged_file, &[]);
    assert_eq!(
        (code, out.contains("signature does not verify")),
        (2, true),
        "{out}"
    );

    // After rotating the chain key, the old one (verify-only) still verifies
    // the old checkpoint; without it the checkpoint names an unknown key.
    let key_b = dir.path().join("b.key");
    std::fs::write(&key_b, "key-b-secret").unwrap();
    let mut rotated = config.clone();
    rotated.chain.verify_only_key_files = vec![config.chain.hmac_key_file.clone().unwrap()];
    rotated.chain.hmac_key_file = Some(key_b.clone());
    let rotated_file = write_config(dir.path(), "rotated.yaml", &rotated);
    let (code, out) = verify_offline(&rotated_file, &file, &["--allow-appended"]);
    assert_eq!(code, 1, "drift, but a trusted checkpoint: {out}");
    assert!(out.contains("signature valid"), "{out}");
    rotated.chain.verify_only_key_files.clear();
    let rotated_file = write_config(dir.path(), "rotated.yaml", &rotated);
    let (code, out) = verify_offline(&rotated_file, &file, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not configured"), "{out}");
}

fn hmac_key(dir: &Path) -> PathBuf {
    let key = dir.join("a.key");
    std::fs::write(&key, "key-a-secret").unwrap();
    key
}

#[tokio::test]
async fn sqlite_tampering_since_a_checkpoint_is_named_offline() {
    let keys = tempfile::tempdir().unwrap();
    let key = hmac_key(keys.path());
    let mut config = None;
    let app = spawn_app_with(|c| {
        c.chain.hmac_key_file = Some(key.clone());
        c.chain.checkpoint_interval = Duration::ZERO;
        c.chain.checkpoint_every_events = 0;
        config = Some(c.clone());
    })
    .await;
    let config = config.unwrap();
    tampering_since_a_checkpoint_is_named(&app, Db::Sqlite(&app.db_path.clone()), config).await;
}

#[tokio::test]
async fn postgres_tampering_since_a_checkpoint_is_named_offline() {
    let Some(cluster) = tokio::task::spawn_blocking(PgCluster::start_or_skip)
        .await
        .unwrap()
    else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = hmac_key(keys.path());
    let mut config = None;
    let app = spawn_app_with(|c| {
        c.store.backend = Backend::Postgres;
        c.store.postgres = cluster.default_config();
        c.chain.hmac_key_file = Some(key.clone());
        c.chain.checkpoint_interval = Duration::ZERO;
        c.chain.checkpoint_every_events = 0;
        config = Some(c.clone());
    })
    .await;
    let config = config.unwrap();
    tampering_since_a_checkpoint_is_named(&app, Db::Postgres(&cluster), config).await;
}

/// With an Ed25519 key the server takes checkpoints by itself after
/// `checkpoint_every_events` events, and anyone with the public key (and no
/// secret at all) can check them; another key is refused.
#[tokio::test]
async fn ed25519_checkpoints_are_taken_by_count_and_verify_with_the_public_key_only() {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey};
    let dir = tempfile::tempdir().unwrap();
    let signing = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let private = dir.path().join("checkpoint.pem");
    std::fs::write(
        &private,
        signing.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let public = dir.path().join("checkpoint.pub.pem");
    std::fs::write(
        &public,
        signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let mut config = None;
    let app = spawn_app_with(|c| {
        c.chain.checkpoint_signing_key_file = Some(private.clone());
        c.chain.checkpoint_interval = Duration::ZERO;
        c.chain.checkpoint_every_events = 10;
        config = Some(c.clone());
    })
    .await;
    let config = config.unwrap();
    let (status, _) = app.get_json("/api/v1/audit/checkpoints/latest").await;
    assert_eq!(status, 404, "no checkpoint before any event");
    assert_eq!(app.post_batch(&events("ed-a", 12)).await.status(), 201);
    // The checkpointer runs beside the request; poll its result (bounded).
    let mut latest = Value::Null;
    for _ in 0..200 {
        let (status, body) = app.get_json("/api/v1/audit/checkpoints/latest").await;
        if status == 200 {
            latest = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(latest["algorithm"], "ed25519", "{latest}");
    assert_eq!(latest["event_count"], 12);
    let file = dir.path().join("cp.json");
    std::fs::write(&file, latest.to_string()).unwrap();

    let mut verifier = config.clone();
    verifier.chain.checkpoint_signing_key_file = None;
    verifier.chain.checkpoint_public_key_files = vec![public];
    let verifier_file = write_config(dir.path(), "verifier.yaml", &verifier);
    let (code, out) = verify_offline(&verifier_file, &file, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ed25519 signature valid"), "{out}");

    let other = dir.path().join("other.pub.pem");
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    std::fs::write(
        &other,
        stranger
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    verifier.chain.checkpoint_public_key_files = vec![other];
    let verifier_file = write_config(dir.path(), "verifier.yaml", &verifier);
    let (code, out) = verify_offline(&verifier_file, &file, &[]);
    assert_eq!(code, 2, "{out}");
}
