//! Signed checkpoints: a signed digest of every chain head, taken every
//! `chain.checkpoint_interval` or `chain.checkpoint_every_events`.
//!
//! The chain heads kept apart from the rows make deleting events visible to
//! `verify-chain`, but someone with the database owner's rights can rewrite the
//! heads too. A checkpoint exported (`GET /api/v1/audit/checkpoints/latest`)
//! and kept elsewhere cannot be rewritten: `datastorage verify --checkpoint FILE`
//! compares a store with it offline and names every correlation that lost,
//! gained or changed events since, as CloudTrail's signed digest files do for
//! log files. Checkpoints are signed with Ed25519 when
//! `chain.checkpoint_signing_key_file` is set (verifiable by anyone holding the
//! public key), else with HMAC-SHA256 under the chain key; without either they
//! are recorded unsigned (`sha256`) and say so.

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::chain::{ChainHasher, ChainHead};

/// `algorithm` of a checkpoint signed with the Ed25519 signing key.
pub const ED25519: &str = "ed25519";
/// `algorithm` of a checkpoint signed with the chain's HMAC key.
pub const HMAC_SHA256: &str = "hmac-sha256";
/// `algorithm` of an unsigned checkpoint (no key configured): its digest only.
pub const UNSIGNED: &str = "sha256";

/// One chain head as a checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointHead {
    /// The chain.
    pub correlation_id: String,
    /// `chain_seq` of its newest event when the checkpoint was taken.
    pub chain_seq: i64,
    /// That event's `event_hash`.
    pub event_hash: String,
}

/// What a checkpoint says, without its heads (the list endpoint's items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointSummary {
    /// Unique id (UUIDv7, so ids sort by time).
    pub checkpoint_id: Uuid,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Number of chains it covers.
    pub head_count: usize,
    /// Sum of the heads' `chain_seq`: every event stored until then.
    pub event_count: i64,
    /// `hex(SHA-256(JCS(heads)))`, heads sorted by `correlation_id`.
    pub heads_digest: String,
    /// `ed25519`, `hmac-sha256` or `sha256` (unsigned).
    pub algorithm: String,
    /// Id of the signing key: first 16 hex digits of the SHA-256 of the Ed25519
    /// public key, or the chain key's id.
    pub key_id: Option<String>,
    /// Hex signature of `JCS(the fields above)`; for `sha256` that JCS's digest.
    pub signature: String,
}

/// A checkpoint with every head it covers: the exportable document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignedCheckpoint {
    /// Id, time, digest and signature.
    #[serde(flatten)]
    pub summary: CheckpointSummary,
    /// Every chain head, sorted by `correlation_id`.
    pub heads: Vec<CheckpointHead>,
}

/// Why a checkpoint document is not to be trusted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// The heads do not hash to `heads_digest`, or the counts disagree.
    #[error("the checkpoint's heads do not match its digest (edited heads)")]
    DigestMismatch,
    /// The signature does not verify with the key it names.
    #[error("the checkpoint's signature does not verify (edited or forged checkpoint)")]
    BadSignature,
    /// It names a key this verifier does not hold.
    #[error("the checkpoint is signed with {algorithm} key {key_id:?}, which is not configured")]
    UnknownKey {
        /// The checkpoint's algorithm.
        algorithm: String,
        /// The key id it names.
        key_id: Option<String>,
    },
    /// An algorithm this build does not know.
    #[error("unknown checkpoint algorithm {0:?}")]
    UnknownAlgorithm(String),
}

fn key_id_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..16].to_owned()
}

/// Signs new checkpoints and verifies stored or exported ones.
#[derive(Clone)]
pub struct CheckpointKeys {
    /// The Ed25519 key new checkpoints are signed with.
    signing: Option<SigningKey>,
    /// Public keys accepted for Ed25519 checkpoints (the signing key's own, and
    /// retired or verify-only ones).
    public: Vec<(String, VerifyingKey)>,
    /// The chain keys (HMAC checkpoints use them).
    hasher: ChainHasher,
}

impl std::fmt::Debug for CheckpointKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a key, only ids.
        f.debug_struct("CheckpointKeys")
            .field("algorithm", &self.algorithm())
            .field(
                "public",
                &self.public.iter().map(|k| &k.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl CheckpointKeys {
    /// Keys from the chain's HMAC keys only (HMAC-signed or unsigned checkpoints).
    pub fn new(hasher: ChainHasher) -> Self {
        Self {
            signing: None,
            public: Vec::new(),
            hasher,
        }
    }

    /// Signs new checkpoints with this Ed25519 key.
    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        let public = key.verifying_key();
        self.public.push((key_id_of(public.as_bytes()), public));
        self.signing = Some(key);
        self
    }

    /// Accepts Ed25519 checkpoints signed by the holder of `key`.
    pub fn with_public_key(mut self, key: VerifyingKey) -> Self {
        self.public.push((key_id_of(key.as_bytes()), key));
        self
    }

    /// [`CheckpointKeys::with_signing_key`] from a PKCS#8 PEM file
    /// (`openssl genpkey -algorithm ed25519`).
    pub fn with_signing_key_file(self, path: &Path) -> Result<Self, String> {
        let pem = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| format!("not a PKCS#8 PEM Ed25519 private key: {e}"))?;
        Ok(self.with_signing_key(key))
    }

    /// [`CheckpointKeys::with_public_key`] from a PEM public key file
    /// (`openssl pkey -pubout`).
    pub fn with_public_key_file(self, path: &Path) -> Result<Self, String> {
        let pem = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let key = VerifyingKey::from_public_key_pem(&pem)
            .map_err(|e| format!("not a PEM Ed25519 public key: {e}"))?;
        Ok(self.with_public_key(key))
    }

    /// The algorithm new checkpoints get.
    pub fn algorithm(&self) -> &'static str {
        if self.signing.is_some() {
            ED25519
        } else if self.hasher.current_key().is_some() {
            HMAC_SHA256
        } else {
            UNSIGNED
        }
    }

    /// A signed checkpoint of `heads` (any order), taken now.
    pub fn sign(&self, heads: Vec<(String, ChainHead)>) -> SignedCheckpoint {
        let mut heads: Vec<CheckpointHead> = heads
            .into_iter()
            .map(|(correlation_id, h)| CheckpointHead {
                correlation_id,
                chain_seq: h.chain_seq,
                event_hash: h.event_hash,
            })
            .collect();
        heads.sort_by(|a, b| a.correlation_id.cmp(&b.correlation_id));
        let now = Utc::now();
        let created_at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        let (algorithm, key_id) = self.signer();
        let mut summary = CheckpointSummary {
            checkpoint_id: Uuid::now_v7(),
            created_at,
            head_count: heads.len(),
            event_count: heads.iter().map(|h| h.chain_seq).sum(),
            heads_digest: heads_digest(&heads),
            algorithm: algorithm.to_owned(),
            key_id,
            signature: String::new(),
        };
        let message = signed_bytes(&summary);
        summary.signature = hex::encode(self.sign_message(&message));
        SignedCheckpoint { summary, heads }
    }

    /// Checks a checkpoint's digest and signature with the key it names.
    /// `Ok(false)` for an intact but unsigned checkpoint.
    pub fn verify(&self, checkpoint: &SignedCheckpoint) -> Result<bool, CheckpointError> {
        let s = &checkpoint.summary;
        if heads_digest(&checkpoint.heads) != s.heads_digest
            || checkpoint.heads.len() != s.head_count
            || checkpoint.heads.iter().map(|h| h.chain_seq).sum::<i64>() != s.event_count
        {
            return Err(CheckpointError::DigestMismatch);
        }
        let message = signed_bytes(s);
        let signature = hex::decode(&s.signature).map_err(|_| CheckpointError::BadSignature)?;
        self.verify_message(&s.algorithm, s.key_id.as_deref(), &message, &signature)
    }

    /// The algorithm and key id [`CheckpointKeys::sign_message`] signs with.
    pub fn signer(&self) -> (&'static str, Option<String>) {
        match (&self.signing, self.hasher.current_key()) {
            (Some(key), _) => (ED25519, Some(key_id_of(key.verifying_key().as_bytes()))),
            (None, Some((id, _))) => (HMAC_SHA256, Some(id.to_owned())),
            (None, None) => (UNSIGNED, None),
        }
    }

    /// Signs any message with the checkpoint signer (Ed25519, else HMAC under
    /// the chain key, else only its SHA-256 digest): checkpoints and exports
    /// share one signer, so one set of keys verifies both offline.
    pub fn sign_message(&self, message: &[u8]) -> Vec<u8> {
        match (&self.signing, self.hasher.current_key()) {
            (Some(key), _) => key.sign(message).to_bytes().to_vec(),
            (None, Some((_, secret))) => hmac_bytes(secret, message),
            (None, None) => Sha256::digest(message).to_vec(),
        }
    }

    /// Checks a signature made by [`CheckpointKeys::sign_message`] with the key
    /// `key_id` names. `Ok(false)` for an intact but unsigned (`sha256`) message.
    pub fn verify_message(
        &self,
        algorithm: &str,
        key_id: Option<&str>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, CheckpointError> {
        let unknown = || CheckpointError::UnknownKey {
            algorithm: algorithm.to_owned(),
            key_id: key_id.map(str::to_owned),
        };
        match algorithm {
            UNSIGNED => (Sha256::digest(message).as_slice() == signature)
                .then_some(false)
                .ok_or(CheckpointError::BadSignature),
            HMAC_SHA256 => {
                let id = key_id.ok_or_else(unknown)?;
                let secret = self.hasher.key_by_id(id).ok_or_else(unknown)?;
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
                mac.update(message);
                mac.verify_slice(signature)
                    .map(|()| true)
                    .map_err(|_| CheckpointError::BadSignature)
            }
            ED25519 => {
                let id = key_id.ok_or_else(unknown)?;
                let (_, key) = self
                    .public
                    .iter()
                    .find(|(kid, _)| kid == id)
                    .ok_or_else(unknown)?;
                let signature = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| CheckpointError::BadSignature)?;
                key.verify_strict(message, &signature)
                    .map(|()| true)
                    .map_err(|_| CheckpointError::BadSignature)
            }
            other => Err(CheckpointError::UnknownAlgorithm(other.to_owned())),
        }
    }
}

fn hmac_bytes(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// `hex(SHA-256(JCS(heads)))`.
fn heads_digest(heads: &[CheckpointHead]) -> String {
    let jcs = serde_json_canonicalizer::to_vec(&heads).expect("heads always serialise");
    hex::encode(Sha256::digest(jcs))
}

/// The bytes a signature covers: JCS of the summary without its signature.
fn signed_bytes(summary: &CheckpointSummary) -> Vec<u8> {
    let mut value = serde_json::to_value(summary).expect("summaries always serialise");
    if let Some(map) = value.as_object_mut() {
        map.remove("signature");
    }
    serde_json_canonicalizer::to_vec(&value).expect("JSON values always canonicalise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads() -> Vec<(String, ChainHead)> {
        (1..=3)
            .map(|i| {
                (
                    format!("c{i}"),
                    ChainHead {
                        chain_seq: i,
                        event_hash: format!("{i:064}"),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn each_algorithm_signs_and_verifies_and_an_edit_is_refused() {
        let ed = SigningKey::from_bytes(&[7; 32]);
        let keysets = [
            CheckpointKeys::new(ChainHasher::sha256()),
            CheckpointKeys::new(ChainHasher::hmac(b"k".to_vec())),
            CheckpointKeys::new(ChainHasher::sha256()).with_signing_key(ed),
        ];
        for (keys, algorithm) in keysets.iter().zip([UNSIGNED, HMAC_SHA256, ED25519]) {
            let cp = keys.sign(heads());
            assert_eq!(cp.summary.algorithm, algorithm);
            assert_eq!((cp.summary.head_count, cp.summary.event_count), (3, 6));
            assert_eq!(keys.verify(&cp), Ok(algorithm != UNSIGNED));
            let mut edited = cp.clone();
            edited.heads[1].chain_seq = 1;
            edited.summary.event_count = 5;
            edited.summary.heads_digest = heads_digest(&edited.heads);
            assert_eq!(keys.verify(&edited), Err(CheckpointError::BadSignature));
            let mut dropped = cp.clone();
            dropped.heads.pop();
            assert_eq!(keys.verify(&dropped), Err(CheckpointError::DigestMismatch));
        }
    }

    #[test]
    fn a_verifier_needs_the_key_the_checkpoint_names() {
        let old = CheckpointKeys::new(ChainHasher::hmac(b"old".to_vec()));
        let cp = old.sign(heads());
        let rotated = CheckpointKeys::new(ChainHasher::hmac(b"new".to_vec()));
        assert!(matches!(
            rotated.verify(&cp),
            Err(CheckpointError::UnknownKey { .. })
        ));
        let with_old = CheckpointKeys::new(
            ChainHasher::hmac(b"new".to_vec()).with_verify_only(b"old".to_vec()),
        );
        assert_eq!(with_old.verify(&cp), Ok(true));

        let ed = SigningKey::from_bytes(&[9; 32]);
        let public = ed.verifying_key();
        let cp = CheckpointKeys::new(ChainHasher::sha256())
            .with_signing_key(ed)
            .sign(heads());
        let offline = CheckpointKeys::new(ChainHasher::sha256()).with_public_key(public);
        assert_eq!(offline.verify(&cp), Ok(true));
        let stranger = CheckpointKeys::new(ChainHasher::sha256())
            .with_public_key(SigningKey::from_bytes(&[1; 32]).verifying_key());
        assert!(matches!(
            stranger.verify(&cp),
            Err(CheckpointError::UnknownKey { .. })
        ));
    }
}
