//! A lint of the service Dockerfile. No Docker engine (nor hadolint package)
//! exists on these machines, so the rules that matter are checked here from the
//! text: they are the ones hadolint would flag for this file.

use std::path::Path;

fn dockerfile() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/docker/Dockerfile"),
    )
    .unwrap()
}

fn instructions(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(i, rest)| (i.to_ascii_uppercase(), rest.to_owned()))
        })
        .filter(|(i, _)| i.chars().all(|c| c.is_ascii_uppercase()))
        .collect()
}

#[test]
fn the_dockerfile_is_multi_stage_pinned_cached_and_non_root() {
    let text = dockerfile();
    let ins = instructions(&text);
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, r)| r)
        .collect();
    assert!(froms.len() >= 3, "multi-stage build expected");
    let stages: Vec<&str> = froms
        .iter()
        .filter_map(|f| {
            f.split_whitespace()
                .skip_while(|w| !w.eq_ignore_ascii_case("as"))
                .nth(1)
        })
        .collect();
    // Base images are named once, in ARGs pinned by digest, and every FROM
    // that is not an earlier stage uses one of them.
    let args: Vec<(&str, &str)> = ins
        .iter()
        .filter(|(i, _)| i == "ARG")
        .filter_map(|(_, r)| r.split_once('='))
        .collect();
    for from in &froms {
        let image = from.split_whitespace().next().unwrap();
        if stages.contains(&image) {
            continue; // an earlier stage, not a base image
        }
        let arg = image
            .strip_prefix("${")
            .and_then(|a| a.strip_suffix('}'))
            .unwrap_or_else(|| panic!("name base images in a digest-pinned ARG: {from}"));
        let (_, reference) = args
            .iter()
            .find(|(name, _)| *name == arg)
            .unwrap_or_else(|| panic!("ARG {arg} has no default"));
        let digest = reference
            .split_once("@sha256:")
            .map(|(_, d)| d)
            .unwrap_or_else(|| panic!("pin {arg} by digest: {reference}"));
        assert!(
            digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
            "{arg}: {digest}"
        );
    }
    // The dependency layer is cooked before the sources are copied in.
    let cook = text
        .find("cargo chef cook")
        .expect("dependency caching layer");
    let copy_sources = text.rfind("COPY . .").unwrap();
    assert!(
        cook < copy_sources,
        "dependencies must be built before copying the sources"
    );
    assert!(text.contains("--locked"), "builds must use Cargo.lock");
    // `BIN` comes after every compile layer, so both images share them.
    let bin = text.find("ARG BIN").expect("ARG BIN");
    let build = text.rfind("cargo build").expect("cargo build");
    assert!(
        cook < bin && build < bin,
        "ARG BIN must follow the dependency and build layers"
    );
    // Only the service crates are built: no test-support code ships.
    let build_line = &text[build..text[build..].find('\n').map_or(text.len(), |e| build + e)];
    assert!(
        build_line.contains("-p datastorage") && build_line.contains("-p gateway"),
        "build with -p <crate>: {build_line}"
    );
    assert!(!build_line.contains("--workspace"), "{build_line}");
    // Compiles use BuildKit cache mounts for the registry.
    for step in ["cargo chef cook", "cargo build"] {
        let at = text.find(step).unwrap();
        let run = text[..at].rfind("RUN ").unwrap();
        assert!(
            text[run..at].contains("--mount=type=cache,target=/usr/local/cargo/registry"),
            "{step} must use a BuildKit cache mount"
        );
    }
    // The final stage runs as a numeric non-root user.
    let last_from = text.rfind("\nFROM ").unwrap();
    let runtime = &text[last_from..];
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric user");
    assert_ne!(uid, 0);
    assert!(runtime.contains("ENTRYPOINT [\""), "exec-form ENTRYPOINT");
    assert!(!text.contains("ADD "), "COPY instead of ADD");
}

#[test]
fn the_runtime_user_matches_the_manifests() {
    let text = dockerfile();
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    let uid = user.split(':').next().unwrap();
    for manifest in ["datastorage.yaml", "gateway.yaml"] {
        let yaml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/base")
                .join(manifest),
        )
        .unwrap();
        assert!(
            yaml.contains(&format!("runAsUser: {uid}")),
            "{manifest} must run as {uid}"
        );
    }
}
