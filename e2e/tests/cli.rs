//! The `e2e` command line as `make e2e` uses it: on a machine without Docker
//! or kind (like these), the Kind platform must say what is missing and exit
//! non-zero before trying anything, never pass silently.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn e2e_with_path(path: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_e2e"))
        .args(args)
        .env("PATH", path)
        .env_remove("E2E_PLATFORM")
        .output()
        .expect("run e2e")
}

#[test]
fn kind_without_any_tool_names_all_three_and_fails() {
    let empty = tempfile::tempdir().unwrap();
    let out = e2e_with_path(empty.path(), &["test", "--platform", "kind"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    for tool in ["`docker`", "`kind`", "`kubectl`"] {
        assert!(stderr.contains(tool), "{tool} not named in: {stderr}");
    }
}

#[test]
fn kind_with_only_kubectl_names_docker_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let kubectl = dir.path().join("kubectl");
    std::fs::write(&kubectl, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [
        &["test", "--platform", "kind"][..],
        &["up", "--platform", "kind"][..],
    ] {
        let out = e2e_with_path(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail: {stderr}");
        assert!(
            stderr.contains("`docker`") && stderr.contains("`kind`"),
            "{stderr}"
        );
        assert!(!stderr.contains("`kubectl`"), "kubectl is there: {stderr}");
    }
}

#[test]
fn an_unknown_platform_is_refused_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = e2e_with_path(dir.path(), &["test", "--platform", "minikube"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("local") && stderr.contains("kind"),
        "{stderr}"
    );
}

#[test]
fn kind_with_every_tool_but_no_docker_engine_says_the_engine_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let tool = |name: &str, script: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    tool("kubectl", "#!/bin/sh\nexit 0\n");
    tool("kind", "#!/bin/sh\nexit 0\n");
    // A docker CLI whose daemon is not running, as on these machines.
    tool(
        "docker",
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2\nexit 1\n",
    );
    let out = e2e_with_path(dir.path(), &["test", "--platform", "kind"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("engine does not answer"), "{stderr}");
    assert!(
        stderr.contains("Cannot connect to the Docker daemon"),
        "{stderr}"
    );
}
