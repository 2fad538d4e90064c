//! The README's curl example, run against a live server, so it stays true.

mod common;

use common::*;
use serde_json::Value;

fn readme_example() -> String {
    readme_block("readme-example")
}

/// The `sh` block between `<!-- {marker}:start -->` and `<!-- {marker}:end -->`.
fn readme_block(marker: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the workspace root");
    let start = readme
        .find(&format!("<!-- {marker}:start -->"))
        .expect("start marker");
    let end = readme
        .find(&format!("<!-- {marker}:end -->"))
        .expect("end marker");
    let block = &readme[start..end];
    let code_start = block.find("```sh\n").expect("sh block") + "```sh\n".len();
    let code_end = block[code_start..].find("```").expect("block end") + code_start;
    block[code_start..code_end].to_owned()
}

#[tokio::test]
async fn the_readme_curl_example_stores_and_queries_an_event() {
    let app = spawn_app().await;
    // The README talks to the default port; point it at this test's server.
    let script = readme_example().replace("localhost:8080", &app.api.to_string());
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .expect("bash and curl are installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "example failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Three JSON documents: the store answer, the query page, the chain report.
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(docs.len(), 3, "{stdout}");
    assert_eq!(docs[0]["created"], 1, "{stdout}");
    assert_eq!(docs[1]["data"][0]["correlation_id"], "rr-readme-example");
    assert_eq!(docs[1]["data"][0]["event_id"], docs[0]["event_ids"][0]);
    assert_eq!(docs[2]["is_valid"], true);
}

#[tokio::test]
async fn the_readme_reference_client_calls_answer_as_that_client_expects() {
    let app = spawn_app().await;
    let script =
        readme_block("readme-reference-example").replace("localhost:8080", &app.api.to_string());
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .expect("bash and curl are installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "example failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(docs.len(), 3, "{stdout}");
    // The write answer the reference client requires.
    assert!(
        docs[0]["event_id"].is_string() && docs[0]["message"].is_string(),
        "{stdout}"
    );
    assert!(docs[0]["event_timestamp"].is_string(), "{stdout}");
    // The query: offset pagination with its total, the event stored as sent.
    assert_eq!(docs[1]["pagination"]["total"], 1, "{stdout}");
    assert_eq!(docs[1]["pagination"]["offset"], 0, "{stdout}");
    let event = &docs[1]["data"][0];
    assert_eq!(event["event_id"], docs[0]["event_id"], "{stdout}");
    assert_eq!(event["namespace"], "", "{stdout}");
    assert_eq!(event["actor_id"], "gateway-service", "{stdout}");
    // The legal hold answer.
    assert_eq!(docs[2]["events_affected"], 1, "{stdout}");
}

/// The README's export example: an export verified offline by the CLI with
/// the public key only.
#[tokio::test]
async fn the_readme_export_example_verifies_offline() {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey};
    let dir = tempfile::tempdir().unwrap();
    let signing = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let private = dir.path().join("signer.pem");
    std::fs::write(
        &private,
        signing.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("signer.pub.pem"),
        signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let app = spawn_app_with(|c| c.chain.checkpoint_signing_key_file = Some(private.clone())).await;
    let script =
        readme_block("readme-export-example").replace("localhost:8080", &app.api.to_string());
    // `datastorage` on PATH is this build's binary, with no configuration of its own.
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_datastorage"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("DATASTORAGE_LOG__LEVEL", "warn")
        .env(
            "DATASTORAGE_STORE__SQLITE__PATH",
            dir.path().join("unused.db"),
        )
        .output()
        .await
        .expect("bash and curl are installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "example failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("2 events, 1 chains"), "{stdout}");
    assert!(stdout.contains("signature valid (ed25519"), "{stdout}");
    assert!(
        stdout.contains("every event hash, link and range checks out"),
        "{stdout}"
    );
    let export: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("export.json")).unwrap()).unwrap();
    assert!(export["detached_signature"].is_string(), "{export}");
}
