//! `static` mode: a tokens file for running outside Kubernetes.
//!
//! ```yaml
//! # token: {subject, verbs}
//! 3f7c…writer: {subject: "system:serviceaccount:kubernaut-system:gateway", verbs: [create]}
//! 9a1d…reader: {subject: "alice@example.com", verbs: [list, get]}
//! ```
//!
//! Only SHA-256 digests of the tokens are kept in memory, and a presented token
//! is compared against every entry in constant time, so neither timing nor a
//! memory dump reveals a valid token.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use figment::providers::{Format, Yaml};
use figment::Figment;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AuthError, Identity, Verb};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    subject: String,
    #[serde(default)]
    groups: Vec<String>,
    verbs: BTreeSet<Verb>,
}

#[derive(Debug)]
struct Known {
    digest: [u8; 32],
    identity: Identity,
    verbs: BTreeSet<Verb>,
}

/// The loaded tokens.
#[derive(Debug)]
pub struct StaticTokens {
    known: Vec<Known>,
    /// The protected Service and its namespace, named in 403 answers.
    service: String,
    namespace: String,
}

impl StaticTokens {
    /// Loads and checks a tokens file.
    pub fn load(path: &Path, service: &str, namespace: &str) -> Result<Self, AuthError> {
        let entries: BTreeMap<String, Entry> = Figment::from(Yaml::file_exact(path))
            .extract()
            .map_err(|e| AuthError::Config(format!("tokens file {}: {e}", path.display())))?;
        if entries.is_empty() {
            return Err(AuthError::Config(format!(
                "tokens file {} has no tokens",
                path.display()
            )));
        }
        let known = entries
            .into_iter()
            .map(|(token, entry)| {
                if token.len() < 16 {
                    return Err(AuthError::Config(format!(
                        "a token of {} in {} is shorter than 16 characters",
                        entry.subject,
                        path.display()
                    )));
                }
                Ok(Known {
                    digest: Sha256::digest(token.as_bytes()).into(),
                    identity: Identity {
                        subject: entry.subject,
                        groups: entry.groups,
                        ..Identity::default()
                    },
                    verbs: entry.verbs,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            known,
            service: service.to_owned(),
            namespace: namespace.to_owned(),
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Authenticates `token` and authorizes `verb`.
    pub fn check(&self, token: &str, verb: Verb) -> Result<Identity, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Visit every entry whatever matches, so timing does not depend on position.
        let mut found: Option<&Known> = None;
        for known in &self.known {
            if bool::from(known.digest.ct_eq(&digest)) {
                found = Some(known);
            }
        }
        let known = found.ok_or(AuthError::InvalidToken)?;
        if known.verbs.contains(&verb) {
            Ok(known.identity.clone())
        } else {
            Err(AuthError::Forbidden {
                subject: known.identity.subject.clone(),
                verb,
                resource: self.service.clone(),
                namespace: self.namespace.clone(),
                role: audit_sdk::names::DATA_STORAGE_CLIENT_ROLE,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(yaml: &str) -> Result<StaticTokens, AuthError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        std::fs::write(&path, yaml).unwrap();
        StaticTokens::load(&path, "data-storage-service", "kubernaut-system")
    }

    #[test]
    fn verbs_are_granted_per_token() {
        let t = tokens(
            "writer-token-0123456789: {subject: system:serviceaccount:ns:gw, verbs: [create]}\n\
             reader-token-0123456789: {subject: alice, verbs: [list, get]}\n",
        )
        .unwrap();
        assert_eq!(
            t.check("writer-token-0123456789", Verb::Create)
                .unwrap()
                .subject,
            "system:serviceaccount:ns:gw"
        );
        assert!(matches!(
            t.check("writer-token-0123456789", Verb::List),
            Err(AuthError::Forbidden {
                verb: Verb::List,
                ..
            })
        ));
        assert_eq!(
            t.check("reader-token-0123456789", Verb::Get)
                .unwrap()
                .subject,
            "alice"
        );
        assert!(matches!(
            t.check("nobody-token-0123456789", Verb::Get),
            Err(AuthError::InvalidToken)
        ));
    }

    #[test]
    fn short_tokens_unknown_verbs_and_empty_files_are_refused() {
        assert!(tokens("short: {subject: a, verbs: [create]}\n").is_err());
        assert!(tokens("long-enough-token-123: {subject: a, verbs: [delete]}\n").is_err());
        assert!(tokens("{}\n").is_err());
    }
}
