//! The host tools the Kind platform needs, checked before anything runs.
//!
//! `make e2e` on a machine without one of them should say which tool is
//! missing and how to install it, not fail halfway through creating a cluster
//! with `No such file or directory`. The check only looks at `PATH`: whether
//! the Docker engine answers is up to `kind create cluster` to report.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;

/// One tool the Kind platform runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prerequisite {
    /// The executable looked up on `PATH`.
    pub tool: &'static str,
    /// What the platform uses it for.
    pub needed_for: &'static str,
    /// How to get it.
    pub install: &'static str,
}

impl fmt::Display for Prerequisite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` not found on PATH (needed to {}); install: {}",
            self.tool, self.needed_for, self.install
        )
    }
}

/// Every tool the Kind platform runs, in the order a reader would install them.
pub const PREREQUISITES: [Prerequisite; 3] = [
    Prerequisite {
        tool: "docker",
        needed_for: "build the images and run the Kind node",
        install: "Docker Engine or Docker Desktop, https://docs.docker.com/engine/install/",
    },
    Prerequisite {
        tool: "kind",
        needed_for: "create the cluster and load the images",
        install: "`go install sigs.k8s.io/kind@latest` or a release binary, https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    },
    Prerequisite {
        tool: "kubectl",
        needed_for: "render, apply and inspect the manifests",
        install: "https://kubernetes.io/docs/tasks/tools/#kubectl",
    },
];

/// The prerequisites missing from this process's `PATH`.
pub fn missing_prerequisites() -> Vec<Prerequisite> {
    missing_in(std::env::var_os("PATH").as_deref())
}

/// The prerequisites missing from `path` (a `PATH`-style list of directories;
/// `None` is an unset `PATH`, where nothing is found).
pub fn missing_in(path: Option<&OsStr>) -> Vec<Prerequisite> {
    let dirs: Vec<_> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    PREREQUISITES
        .iter()
        .filter(|p| !dirs.iter().any(|dir| is_executable(&dir.join(p.tool))))
        .copied()
        .collect()
}

/// `Ok` when every tool is on `PATH` and the Docker engine answers; otherwise
/// an error listing each missing tool with its install hint, or saying that
/// the engine is down (what `make e2e` prints before exiting non-zero).
pub fn check_prerequisites() -> anyhow::Result<()> {
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        anyhow::bail!("{}", report(&missing));
    }
    if let Some(problem) = docker_engine_problem() {
        anyhow::bail!("{problem}");
    }
    Ok(())
}

/// Why the Docker engine cannot be used, when `docker info` fails: a
/// `docker` CLI without a running engine (as on these CI machines) would
/// otherwise fail minutes later inside `kind create cluster`.
fn docker_engine_problem() -> Option<String> {
    let out = match std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => return None,
        Ok(out) => out,
        Err(e) => return Some(format!("`docker info` could not run: {e}")),
    };
    let said = String::from_utf8_lossy(&out.stderr);
    let reason = said
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no reason given");
    Some(format!(
        "`docker` is installed but its engine does not answer (`docker info`: {reason}); \
         start the Docker daemon (or Docker Desktop) and retry\n\
         (`make e2e-local` runs the same scenarios without Docker or kind)"
    ))
}

/// A multi-line report of `missing`, one tool a line.
pub fn report(missing: &[Prerequisite]) -> String {
    let mut out = format!(
        "the Kind e2e platform needs {} more tool(s):",
        missing.len()
    );
    for p in missing {
        out.push_str(&format!("\n  - {p}"));
    }
    out.push_str("\n(`make e2e-local` runs the same scenarios without Docker or kind)");
    out
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_path_misses_docker_kind_and_kubectl() {
        let empty = tempfile::tempdir().unwrap();
        let missing = missing_in(Some(empty.path().as_os_str()));
        let tools: Vec<&str> = missing.iter().map(|p| p.tool).collect();
        assert_eq!(tools, ["docker", "kind", "kubectl"]);
        let text = report(&missing);
        for tool in ["`docker`", "`kind`", "`kubectl`"] {
            assert!(text.contains(tool), "{text}");
        }
        assert!(text.contains("https://kind.sigs.k8s.io"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn only_executable_files_count() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (tool, mode) in [("docker", 0o755), ("kind", 0o644)] {
            let path = dir.path().join(tool);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::create_dir(dir.path().join("kubectl")).unwrap();
        let missing = missing_in(Some(dir.path().as_os_str()));
        let tools: Vec<&str> = missing.iter().map(|p| p.tool).collect();
        assert_eq!(tools, ["kind", "kubectl"]);
    }
}
