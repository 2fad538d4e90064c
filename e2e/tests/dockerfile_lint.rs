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
    for from in &froms {
        let image = from.split_whitespace().next().unwrap();
        if stages.contains(&image) {
            continue; // an earlier stage, not a base image
        }
        assert!(
            !image.ends_with(":latest") && image.contains(':'),
            "pin base image tags: {from}"
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
