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
        .all(|f| f.check == Check::Probes && f.object == "StatefulSet kubernaut-system/gateway"));
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

/// Asserts `fixture` is rejected with exactly one finding of `check`, on
/// `object` and `field`, whose problem and fix hold the given words.
fn rejected(fixture_name: &str, check: Check, object: &str, field: &str, problem: &str, fix: &str) {
    let findings = fixture(fixture_name);
    let f = only(&findings, check);
    assert_eq!(f.object, object, "{fixture_name}: {f}");
    assert_eq!(f.field, field, "{fixture_name}: {f}");
    assert!(f.problem.contains(problem), "{fixture_name}: {f}");
    assert!(f.fix.contains(fix), "{fixture_name}: {f}");
}

const GATEWAY_CONFIG: &str = "ConfigMap kubernaut-system/gateway-config";

#[test]
fn a_name_namespace_url_naming_a_missing_service_is_caught() {
    rejected(
        "url-name-namespace",
        Check::ServiceUrl,
        GATEWAY_CONFIG,
        "data[config.yaml]",
        "\"datastorage\" in namespace kubernaut-system, which does not exist",
        "use http://data-storage-service.kubernaut-system:8080",
    );
}

#[test]
fn a_short_name_naming_a_missing_service_is_caught() {
    rejected(
        "url-short-name",
        Check::ServiceUrl,
        GATEWAY_CONFIG,
        "data[config.yaml]",
        "\"datastorage\"",
        "use http://data-storage-service:8080",
    );
}

#[test]
fn a_url_without_a_port_is_caught_as_the_default_port() {
    rejected(
        "url-without-port",
        Check::ServiceUrl,
        GATEWAY_CONFIG,
        "data[config.yaml]",
        "has no port, so it uses the scheme's default 80",
        "write the API port: http://data-storage-service.kubernaut-system.svc.cluster.local:8080",
    );
}

#[test]
fn a_trailing_dot_fqdn_naming_a_missing_service_is_caught() {
    rejected(
        "url-trailing-dot",
        Check::ServiceUrl,
        GATEWAY_CONFIG,
        "data[config.yaml]",
        "\"datastorage\"",
        "use http://data-storage-service.kubernaut-system.svc.cluster.local.:8080",
    );
}

#[test]
fn a_cluster_domain_the_cluster_does_not_have_is_caught() {
    rejected(
        "url-custom-domain",
        Check::ServiceUrl,
        GATEWAY_CONFIG,
        "data[config.yaml]",
        "cluster domain corp.example, but the cluster's is cluster.local",
        "use data-storage-service.kubernaut-system.svc.cluster.local",
    );
}

#[test]
fn the_metrics_port_as_the_api_url_is_caught() {
    rejected(
        "url-metrics-port",
        Check::ServiceUrl,
        GATEWAY_CONFIG,
        "data[config.yaml]",
        "reaches port 9090, Service kubernaut-system/data-storage-service's metrics port",
        "use the api port: http://data-storage-service.kubernaut-system.svc.cluster.local:8080",
    );
}

#[test]
fn a_scheme_less_host_naming_a_missing_service_is_caught() {
    rejected(
        "host-without-scheme",
        Check::ServiceUrl,
        "ConfigMap kubernaut-system/datastorage-config",
        "data[config.yaml] store.postgres.host",
        "\"postgres\" in namespace kubernaut-system",
        "use postgresql.kubernaut-system.svc.cluster.local",
    );
}

#[test]
fn a_url_in_a_secret_on_the_health_port_is_caught() {
    rejected(
        "url-in-secret",
        Check::ServiceUrl,
        "Secret kubernaut-system/gateway-audit",
        "data[data-storage-url]",
        "data-storage-service's health port",
        "use the api port: http://data-storage-service.kubernaut-system.svc.cluster.local:8080",
    );
}

#[test]
fn a_url_in_container_args_is_caught() {
    rejected(
        "url-in-args",
        Check::ServiceUrl,
        "Deployment kubernaut-system/audit-export",
        "containers[export].args[2]",
        "\"datastorage\"",
        "use http://data-storage-service.kubernaut-system:8080",
    );
}

#[test]
fn a_host_in_an_env_config_map_is_caught() {
    rejected(
        "env-from-configmap",
        Check::ServiceUrl,
        "ConfigMap kubernaut-system/datastorage-env",
        "data[DATASTORAGE_STORE__POSTGRES__HOST]",
        "\"postgres\" in namespace kubernaut-system",
        "use postgresql.kubernaut-system",
    );
}

#[test]
fn a_readiness_probe_on_healthz_is_caught() {
    rejected(
        "readiness-on-healthz",
        Check::Probes,
        "Deployment kubernaut-system/datastorage",
        "containers[datastorage].readinessProbe",
        "asks /healthz",
        "httpGet {path: /readyz, port: health}",
    );
}

#[test]
fn a_tcp_readiness_probe_is_caught() {
    rejected(
        "readiness-tcp",
        Check::Probes,
        "Deployment kubernaut-system/datastorage",
        "containers[datastorage].readinessProbe",
        "TCP check",
        "httpGet {path: /readyz, port: health}",
    );
}

#[test]
fn a_startup_probe_shorter_than_startup_timeout_is_caught() {
    rejected(
        "startup-budget",
        Check::Probes,
        "Deployment kubernaut-system/datastorage",
        "containers[datastorage].startupProbe",
        "allows 60 s, but DataStorage waits up to store.postgres.startup_timeout = 120 s",
        "at least 120 s",
    );
}

#[test]
fn the_production_overlay_passes_every_check() {
    let findings = findings_of("deploy/overlays/production");
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

/// The TLS findings of a fixture (production-based fixtures also differ from
/// the Kind images, which is not what they are about).
fn tls_findings(name: &str) -> Vec<Finding> {
    fixture(name)
        .into_iter()
        .filter(|f| f.check == Check::Tls)
        .collect()
}

#[test]
fn a_plain_http_caller_of_a_tls_data_storage_is_caught() {
    let findings = fixture("tls-http-caller");
    let f = only(&findings, Check::Tls);
    assert_eq!(f.object, "ConfigMap kubernaut-system/gateway-config");
    assert!(f.problem.contains("is plain HTTP"), "{f}");
    assert!(
        f.fix.starts_with(
            "use https://data-storage-service.kubernaut-system.svc.cluster.local:8080"
        ),
        "{f}"
    );
    // The shipped production overlay serves TLS: its Gateway put back to
    // http:// is the same finding.
    let findings = tls_findings("production-http-caller");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(
        findings[0].object,
        "ConfigMap kubernaut-system/gateway-config"
    );
}

#[test]
fn a_tls_data_storage_without_its_certificate_secret_mounted_is_caught() {
    let findings = fixture("tls-missing-mount");
    assert!(
        findings.iter().all(|f| f.check == Check::Tls),
        "{findings:#?}"
    );
    let fields: Vec<&str> = findings.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "containers[datastorage] server.tls.cert_file",
            "containers[datastorage] server.tls.key_file"
        ],
        "{findings:#?}"
    );
    assert!(findings
        .iter()
        .all(|f| f.object == "Deployment kubernaut-system/datastorage"
            && f.fix.contains("datastorage-tls")));
}

#[test]
fn an_https_caller_of_a_plain_data_storage_is_caught() {
    let findings = fixture("tls-https-without-tls");
    let f = only(&findings, Check::Tls);
    assert!(f.problem.contains("serves plain HTTP"), "{f}");
}

#[test]
fn an_https_gateway_without_a_mounted_ca_file_is_caught() {
    let findings = fixture("tls-https-without-ca");
    let f = only(&findings, Check::Tls);
    assert_eq!(f.object, "StatefulSet kubernaut-system/gateway");
    assert_eq!(f.field, "containers[gateway] audit.ca_file");
}
