//! The README's Gateway example, run against a live DataStorage and Gateway, so
//! it stays true.

mod common;

use serde_json::Value;

fn readme_example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the workspace root");
    let start = readme
        .find("<!-- gateway-example:start -->")
        .expect("start marker");
    let end = readme
        .find("<!-- gateway-example:end -->")
        .expect("end marker");
    let block = &readme[start..end];
    let code_start = block.find("```sh\n").expect("sh block") + "```sh\n".len();
    let code_end = block[code_start..].find("```").expect("block end") + code_start;
    block[code_start..code_end].to_owned()
}

#[tokio::test]
async fn the_readme_example_creates_a_request_and_reads_its_audit_trail() {
    let stack = common::start_stack().await;
    let answer_file = stack._dir.path().join("answer.json");
    // The README talks to `make run`'s ports; point it at this test's servers.
    let script = readme_example()
        .replace("localhost:8180", &stack.gw.api.to_string())
        .replace("localhost:8080", &stack.ds.addr.to_string())
        .replace("/tmp/gateway-answer.json", answer_file.to_str().unwrap());
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
    assert_eq!(docs.len(), 2, "{stdout}");
    assert_eq!(docs[0]["status"], "created", "{stdout}");
    let rr = docs[0]["remediation_request"].as_str().unwrap();
    let mut types: Vec<&str> = docs[1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["gateway.crd.created", "gateway.signal.received"]);
    assert!(docs[1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["correlation_id"] == rr));
}
