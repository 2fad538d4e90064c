//! The committed CRD YAML is exactly what the Rust type generates.

use gateway::remediation::crd::{crd_yaml, CRD_PATH};

#[test]
fn the_committed_crd_yaml_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CRD_PATH);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        committed == crd_yaml(),
        "{CRD_PATH} is stale: regenerate it with `cargo run -p gateway -- crdgen --output {CRD_PATH}`"
    );
}

#[test]
fn the_crdgen_command_prints_the_same_yaml() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("crdgen")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), crd_yaml());
}
