//! The fingerprint: which workload a signal is about.
//!
//! Hex SHA-256 of `[cluster:]namespace:Kind:name`. The alert name is left out on
//! purpose, so every alert about one workload joins the same RemediationRequest.

use std::fmt;

use sha2::{Digest, Sha256};

use super::signal::ResourceRef;

/// A 64-character lowercase hex SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of `target`, prefixed with `cluster` when one is configured.
    pub fn of(cluster: Option<&str>, target: &ResourceRef) -> Self {
        let namespace = target.namespace.as_deref().unwrap_or("");
        let key = match cluster {
            Some(c) => format!("{c}:{namespace}:{}:{}", target.kind, target.name),
            None => format!("{namespace}:{}:{}", target.kind, target.name),
        };
        Self(hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// The full hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first `n` hex characters (RemediationRequest names use 12).
    pub fn prefix(&self, n: usize) -> &str {
        &self.0[..n.min(self.0.len())]
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(name: &str) -> ResourceRef {
        ResourceRef::new(Some("payments"), "Deployment", name)
    }

    #[test]
    fn the_fingerprint_is_sha256_of_namespace_kind_and_name() {
        let fp = Fingerprint::of(None, &deployment("api"));
        let expected = hex::encode(Sha256::digest(b"payments:Deployment:api"));
        assert_eq!(fp.as_str(), expected);
        assert_eq!(fp.as_str().len(), 64);
        assert_eq!(fp.prefix(12), &expected[..12]);
    }

    #[test]
    fn a_cluster_name_prefixes_the_key() {
        let fp = Fingerprint::of(Some("east"), &deployment("api"));
        let expected = hex::encode(Sha256::digest(b"east:payments:Deployment:api"));
        assert_eq!(fp.as_str(), expected);
    }

    #[test]
    fn cluster_scoped_targets_have_an_empty_namespace() {
        let fp = Fingerprint::of(None, &ResourceRef::new(None, "Node", "worker-1"));
        assert_eq!(fp.as_str(), hex::encode(Sha256::digest(b":Node:worker-1")));
    }

    #[test]
    fn different_targets_differ() {
        assert_ne!(
            Fingerprint::of(None, &deployment("api")),
            Fingerprint::of(None, &deployment("web"))
        );
    }
}
