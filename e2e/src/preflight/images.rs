//! Check 5: the overlay runs exactly the images `make images` builds.
//!
//! `deploy/images.env` is the one place image names and the tag live; the
//! Makefile includes it, and this check compares the rendered manifests to it.

use std::collections::BTreeMap;
use std::path::Path;

use super::objects::Objects;
use super::{Check, Finding};

/// Image references of the project's own images, from `deploy/images.env`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRefs {
    /// Short name (`datastorage`) → full reference (`localhost/kubernaut/datastorage:e2e`).
    pub by_name: BTreeMap<String, String>,
    /// The tag every reference carries.
    pub tag: String,
}

impl ImageRefs {
    /// Reads `KEY=value` lines: `<NAME>_IMAGE` and `IMAGE_TAG`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Ok(Self::parse(&text))
    }

    /// The production overlay's references: `PRODUCTION_REGISTRY/<name>:PRODUCTION_TAG`.
    pub fn load_production(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let dev = Self::parse(&text);
        let var = |key: &str| {
            text.lines()
                .filter_map(|l| l.trim().split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned())
                .ok_or_else(|| anyhow::anyhow!("{} has no {key}", path.display()))
        };
        let (registry, tag) = (var("PRODUCTION_REGISTRY")?, var("PRODUCTION_TAG")?);
        let by_name = dev
            .by_name
            .keys()
            .map(|short| (short.clone(), format!("{registry}/{short}:{tag}")))
            .collect();
        Ok(Self { by_name, tag })
    }

    pub fn parse(text: &str) -> Self {
        let vars: BTreeMap<&str, &str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let tag = vars.get("IMAGE_TAG").copied().unwrap_or("latest");
        let by_name = vars
            .iter()
            .filter_map(|(k, v)| {
                let short = k.strip_suffix("_IMAGE")?.to_ascii_lowercase();
                Some((short, format!("{v}:{tag}")))
            })
            .collect();
        Self {
            by_name,
            tag: tag.to_owned(),
        }
    }

    /// The same images under another tag (a content tag, for the Kind run).
    pub fn with_tag(&self, tag: &str) -> Self {
        let by_name = self
            .by_name
            .iter()
            .map(|(short, reference)| {
                let name = reference
                    .strip_suffix(&format!(":{}", self.tag))
                    .unwrap_or(reference);
                (short.clone(), format!("{name}:{tag}"))
            })
            .collect();
        Self {
            by_name,
            tag: tag.to_owned(),
        }
    }

    /// `text` (a rendered manifest) with every reference of `self` replaced
    /// by the same image of `other`.
    pub fn retag(&self, text: &str, other: &Self) -> String {
        let mut out = text.to_owned();
        for (short, reference) in &self.by_name {
            if let Some(new) = other.by_name.get(short) {
                out = out.replace(&format!("image: {reference}\n"), &format!("image: {new}\n"));
            }
        }
        out
    }
}

/// The last path segment of an image reference, without tag or digest.
fn short_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

pub fn check(objects: &Objects, refs: &ImageRefs) -> Vec<Finding> {
    let mut findings = Vec::new();
    for w in objects.workloads() {
        for c in w
            .spec
            .init_containers
            .iter()
            .flatten()
            .chain(&w.spec.containers)
        {
            let Some(image) = c.image.as_deref() else {
                continue;
            };
            let Some(expected) = refs.by_name.get(short_name(image)) else {
                continue;
            };
            if image != expected {
                findings.push(Finding {
                    check: Check::Image,
                    object: w.describe(),
                    field: format!("containers[{}].image", c.name),
                    problem: format!("is {image}, but `make images` builds {expected}"),
                    fix: "set the overlay's `images:` entry from deploy/images.env".into(),
                });
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_env_gives_full_references() {
        let refs =
            ImageRefs::parse("# c\nDATASTORAGE_IMAGE=localhost/k/datastorage\nIMAGE_TAG=e2e\n");
        assert_eq!(refs.by_name["datastorage"], "localhost/k/datastorage:e2e");
        assert_eq!(
            short_name("localhost:5000/k/gateway:1.2@sha256:ab"),
            "gateway"
        );
    }
}
