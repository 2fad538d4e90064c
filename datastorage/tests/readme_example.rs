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
