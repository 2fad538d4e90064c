//! The preflight checks on the real Kind overlay and on fixtures that
//! reproduce the reference platform's failures. Rendering uses
//! `kubectl kustomize`, which works offline.

use std::path::Path;

use e2e::preflight::{self, Check, Finding};

fn findings_of(overlay: &str) -> Vec<Finding> {
    let root = preflight::repo_root();
    let dir = root.join(overlay);
    let (_, findings) = preflight::check_overlay(&root, &dir).unwrap();
    findings
}

fn fixture(name: &str) -> Vec<Finding> {
    findings_of(&format!("e2e/tests/fixtures/{name}"))
}

fn only(findings: &[Finding], check: Check) -> &Finding {
    let matching: Vec<&Finding> = findings.iter().filter(|f| f.check == check).collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one {check} finding, got {findings:#?}"
    );
    assert_eq!(
        findings.len(),
        1,
        "no other finding expected: {findings:#?}"
    );
    matching[0]
}

#[test]
fn the_kind_overlay_passes_every_check() {
    let findings = findings_of("deploy/overlays/kind");
    assert!(
        findings.is_empty(),
        "{}",
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_url_naming_a_missing_service_is_caught_with_the_fix() {
    let findings = fixture("wrong-service-name");
    let f = only(&findings, Check::ServiceUrl);
    assert_eq!(f.object, "ConfigMap kubernaut-system/gateway-config");
    assert_eq!(f.field, "data[config.yaml]");
    assert!(f.problem.contains("\"datastorage\""), "{f}");
    assert_eq!(
        f.fix,
        "use http://data-storage-service.kubernaut-system.svc.cluster.local:8080"
    );
}

#[test]
fn a_host_kubeconfig_in_a_pod_is_caught() {
    let findings = fixture("host-kubeconfig");
    let f = only(&findings, Check::HostPath);
    assert_eq!(f.object, "Deployment kubernaut-system/datastorage");
    assert_eq!(f.field, "containers[datastorage].env[KUBECONFIG]");
    assert!(f.problem.contains("/Users/dev/.kube/config"), "{f}");
    assert!(f.fix.contains("remove the KUBECONFIG"), "{f}");
}

#[test]
fn a_reader_bound_only_to_create_is_caught() {
    let findings = fixture("reader-create-only");
    let f = only(&findings, Check::Rbac);
    assert_eq!(f.object, "Deployment kubernaut-system/audit-query-client");
    assert!(
        f.problem.contains("needs get, list") && f.problem.contains("holds create"),
        "{f}"
    );
    assert!(
        f.fix.contains("grant get, list") && f.fix.contains("data-storage-client"),
        "{f}"
    );
}

#[test]
fn missing_probes_and_undeclared_probe_ports_are_caught() {
    let findings = fixture("missing-probe");
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert!(findings
        .iter()
        .all(|f| f.check == Check::Probes && f.object == "Deployment kubernaut-system/gateway"));
    let fields: Vec<&str> = findings.iter().map(|f| f.field.as_str()).collect();
    assert!(fields.contains(&"containers[gateway].readinessProbe"));
    assert!(fields.contains(&"containers[gateway].livenessProbe"));
}

#[test]
fn images_make_does_not_build_and_unmapped_node_ports_are_caught() {
    let findings = fixture("foreign-image");
    let checks: Vec<Check> = findings.iter().map(|f| f.check).collect();
    assert_eq!(checks, [Check::Image, Check::NodePort], "{findings:#?}");
    assert!(findings[0]
        .problem
        .contains("localhost/kubernaut/gateway:latest"));
    assert!(findings[1].problem.contains("30190"));
}

#[test]
fn the_preflight_cli_fails_with_the_findings() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args([
            "preflight",
            "--overlay",
            "e2e/tests/fixtures/wrong-service-name",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[service-url] ConfigMap kubernaut-system/gateway-config"),
        "{stderr}"
    );
}

#[test]
fn a_configuration_the_service_would_refuse_is_caught() {
    let findings = fixture("config-typo");
    let f = only(&findings, Check::Config);
    assert_eq!(f.object, "ConfigMap kubernaut-system/gateway-config");
    assert!(f.problem.contains("data_storage_ur"), "{f}");
}
