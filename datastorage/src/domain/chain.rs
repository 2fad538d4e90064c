//! Tamper evidence: one hash chain per `correlation_id`.
//!
//! Each event's hash covers the previous event's hash and the RFC 8785 (JCS)
//! canonical JSON of the event's own immutable fields, so editing any stored
//! field, deleting an event or reordering the chain is detected by recomputing.
//! Chains are ordered by `chain_seq` (insertion order), not by timestamp, because
//! clocks of different senders disagree and a chain must be append-only.

use std::path::Path;

use audit_sdk::api::{TamperedEvent, VerifyChainResponse};
use audit_sdk::{AuditEvent, StoredEvent};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use super::canonical::canonical_json;

/// `hash_algorithm` of chains hashed without a key.
pub const SHA256: &str = "sha256";
/// `hash_algorithm` of chains hashed with the configured HMAC key.
pub const HMAC_SHA256: &str = "hmac-sha256";

/// The newest link of a chain, kept apart from the rows (`audit_chain_heads`)
/// and moved only by the store's inserts, so deleting rows cannot move it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// `chain_seq` of the newest event stored in the chain.
    pub chain_seq: i64,
    /// That event's `event_hash`.
    pub event_hash: String,
}

/// `reason` of a chain whose newest events are gone: the head says the chain is
/// longer than its rows (the entry's `chain_seq` is the first missing one and its
/// `event_id` the nil UUID, since the event is gone).
pub const TAIL_TRUNCATED: &str = "tail_truncated";
/// `reason` of an event at the head's position whose hash is not the head's.
pub const HEAD_MISMATCH: &str = "head_mismatch";
/// `reason` of an event beyond the head, or of a chain without head: written
/// around the store.
pub const NOT_IN_HEAD: &str = "not_in_head";

/// `reason` of an event whose row names an HMAC key the server does not hold
/// (add it to `chain.verify_only_key_files`).
pub const UNKNOWN_KEY: &str = "unknown_key";

/// One HMAC key and the id rows record for it.
#[derive(Clone)]
struct Key {
    /// First 16 hex digits of the key's SHA-256: names the key without revealing it.
    id: String,
    secret: Vec<u8>,
}

impl Key {
    fn new(secret: Vec<u8>) -> Self {
        let id = hex::encode(Sha256::digest(&secret))[..16].to_owned();
        Self { id, secret }
    }
}

/// Computes event hashes, keyed when an HMAC key is configured.
///
/// A keyed chain cannot be recomputed by someone who can edit the database but
/// does not hold the key, which closes the "rewrite the whole chain" attack.
/// Each row records its `hash_algorithm` and key id, and verification uses the
/// key the row names, so enabling or rotating the key leaves older events
/// verifiable (older keys stay configured as verify-only).
#[derive(Clone)]
pub struct ChainHasher {
    /// The key new events are hashed with.
    key: Option<Key>,
    /// Retired keys, for verifying the events they hashed.
    verify_only: Vec<Key>,
}

impl std::fmt::Debug for ChainHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a key, only its id.
        f.debug_struct("ChainHasher")
            .field("algorithm", &self.algorithm())
            .field("key_id", &self.key_id())
            .field(
                "verify_only",
                &self.verify_only.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn read_key(path: &Path) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(path)?;
    let key = raw.trim_ascii().to_vec();
    if key.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("HMAC key file {} is empty", path.display()),
        ));
    }
    Ok(key)
}

fn digest(key: Option<&[u8]>, previous_hash: &str, canonical: &[u8]) -> String {
    match key {
        None => {
            let mut h = Sha256::new();
            h.update(previous_hash.as_bytes());
            h.update(canonical);
            hex::encode(h.finalize())
        }
        Some(key) => {
            // HMAC accepts keys of any length; this cannot fail.
            let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            m.update(previous_hash.as_bytes());
            m.update(canonical);
            hex::encode(m.finalize().into_bytes())
        }
    }
}

impl ChainHasher {
    /// Plain SHA-256 chains.
    pub fn sha256() -> Self {
        Self {
            key: None,
            verify_only: Vec::new(),
        }
    }

    /// HMAC-SHA256 chains with `key`.
    pub fn hmac(key: Vec<u8>) -> Self {
        Self {
            key: Some(Key::new(key)),
            verify_only: Vec::new(),
        }
    }

    /// Reads the HMAC key from a file (surrounding whitespace ignored).
    pub fn from_key_file(path: &Path) -> std::io::Result<Self> {
        Ok(Self::hmac(read_key(path)?))
    }

    /// Adds a retired key that only verifies the events it hashed.
    pub fn with_verify_only(mut self, key: Vec<u8>) -> Self {
        self.verify_only.push(Key::new(key));
        self
    }

    /// [`ChainHasher::with_verify_only`] with a key file.
    pub fn with_verify_only_file(self, path: &Path) -> std::io::Result<Self> {
        Ok(self.with_verify_only(read_key(path)?))
    }

    /// The value stored in `hash_algorithm`.
    pub fn algorithm(&self) -> &'static str {
        if self.key.is_some() {
            HMAC_SHA256
        } else {
            SHA256
        }
    }

    /// The id stored in `hash_key_id` (none for plain SHA-256).
    pub fn key_id(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.id.as_str())
    }

    /// The current HMAC key and its id (none for plain SHA-256 chains); it
    /// also signs checkpoints when no Ed25519 key is configured.
    pub(crate) fn current_key(&self) -> Option<(&str, &[u8])> {
        self.key
            .as_ref()
            .map(|k| (k.id.as_str(), k.secret.as_slice()))
    }

    /// The HMAC key (current or verify-only) with id `id`.
    pub(crate) fn key_by_id(&self, id: &str) -> Option<&[u8]> {
        self.key
            .iter()
            .chain(&self.verify_only)
            .find(|k| k.id == id)
            .map(|k| k.secret.as_slice())
    }

    /// `hex(H(previous_hash ‖ canonical_json(event)))` with the current key.
    pub fn hash(&self, previous_hash: &str, event: &AuditEvent) -> String {
        self.hash_canonical(previous_hash, &canonical_json(event))
    }

    /// [`ChainHasher::hash`] of an event already in canonical form.
    pub fn hash_canonical(&self, previous_hash: &str, canonical: &[u8]) -> String {
        digest(
            self.key.as_ref().map(|k| k.secret.as_slice()),
            previous_hash,
            canonical,
        )
    }

    /// The hash a stored row should carry, with the algorithm and key the row
    /// names; `None` when it names a key this server does not hold. A keyed row
    /// from before key ids were recorded is checked with every key held.
    pub(crate) fn rehash(&self, stored: &StoredEvent) -> Option<String> {
        let canonical = canonical_json(&stored.event);
        let prev = stored.previous_event_hash.as_str();
        if stored.hash_algorithm == SHA256 {
            return Some(digest(None, prev, &canonical));
        }
        let mut keys = self.key.iter().chain(&self.verify_only);
        match &stored.hash_key_id {
            Some(id) => keys
                .find(|k| &k.id == id)
                .map(|k| digest(Some(&k.secret), prev, &canonical)),
            None => {
                let candidates: Vec<String> = keys
                    .map(|k| digest(Some(&k.secret), prev, &canonical))
                    .collect();
                let matching = candidates.iter().find(|h| **h == stored.event_hash);
                matching.or(candidates.first()).cloned()
            }
        }
    }

    /// Recomputes a chain (events in `chain_seq` order) and names every event
    /// whose content, link or position does not check out, without a head to
    /// compare with (see [`ChainVerifier`]).
    pub fn verify(&self, correlation_id: &str, chain: &[StoredEvent]) -> VerifyChainResponse {
        let mut verifier = ChainVerifier::new(self.clone(), correlation_id, Head::Ignored);
        verifier.feed(chain);
        verifier.finish()
    }

    /// [`ChainHasher::verify`], then the rows against the chain's head: fewer
    /// rows than the head counts is a truncated tail (or a deleted correlation),
    /// a different newest hash a replaced tail, rows past the head or a chain
    /// without head were written around the store.
    pub fn verify_with_head(
        &self,
        correlation_id: &str,
        chain: &[StoredEvent],
        head: Option<&ChainHead>,
    ) -> VerifyChainResponse {
        let mut verifier =
            ChainVerifier::new(self.clone(), correlation_id, Head::Kept(head.cloned()));
        verifier.feed(chain);
        verifier.finish()
    }
}

/// What a [`ChainVerifier`] compares the rows with at the end.
#[derive(Debug, Clone)]
pub enum Head {
    /// Only the rows themselves (no head known).
    Ignored,
    /// The head kept apart from the rows (`None`: the store has none).
    Kept(Option<ChainHead>),
}

/// Verifies a chain fed in `chain_seq` order, one chunk at a time, so a chain
/// of any length is checked in the memory of one chunk (plus the findings).
///
/// Each event is checked against its own stored `previous_event_hash`, so an
/// edited event is reported alone instead of taking every later event with it.
#[derive(Debug)]
pub struct ChainVerifier {
    hasher: ChainHasher,
    correlation_id: String,
    head: Head,
    /// Rows seen so far.
    total: usize,
    /// `event_hash` of the last row seen ("" before the first).
    previous_hash: String,
    /// `chain_seq` of the last row seen (0 before the first).
    last_seq: i64,
    /// Distinct rows with at least one finding.
    flagged_rows: usize,
    tampered: Vec<TamperedEvent>,
}

impl ChainVerifier {
    /// A verifier of `correlation_id`'s chain.
    pub fn new(hasher: ChainHasher, correlation_id: &str, head: Head) -> Self {
        Self {
            hasher,
            correlation_id: correlation_id.to_owned(),
            head,
            total: 0,
            previous_hash: String::new(),
            last_seq: 0,
            flagged_rows: 0,
            tampered: Vec::new(),
        }
    }

    /// Rows fed so far.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Checks the next rows of the chain (continuing where the last chunk ended).
    pub fn feed(&mut self, chunk: &[StoredEvent]) {
        for stored in chunk {
            let before = self.tampered.len();
            self.check(stored);
            if self.tampered.len() > before {
                self.flagged_rows += 1;
            }
            self.total += 1;
            self.previous_hash.clone_from(&stored.event_hash);
            self.last_seq = stored.chain_seq;
        }
    }

    fn flag(&mut self, stored: &StoredEvent, expected: String, actual: String, reason: &str) {
        self.tampered.push(TamperedEvent {
            event_id: stored.event_id(),
            chain_seq: stored.chain_seq,
            expected_hash: expected,
            actual_hash: actual,
            reason: reason.into(),
        });
    }

    fn check(&mut self, stored: &StoredEvent) {
        let expected_seq = self.total as i64 + 1;
        if stored.chain_seq != expected_seq {
            self.flag(
                stored,
                format!("chain_seq {expected_seq}"),
                format!("chain_seq {}", stored.chain_seq),
                "sequence_gap",
            );
        }
        if stored.previous_event_hash != self.previous_hash {
            let expected = self.previous_hash.clone();
            self.flag(
                stored,
                expected,
                stored.previous_event_hash.clone(),
                "broken_link",
            );
        }
        match self.hasher.rehash(stored) {
            None => self.flag(
                stored,
                format!(
                    "a configured key with id {}",
                    stored.hash_key_id.as_deref().unwrap_or("?")
                ),
                stored.event_hash.clone(),
                UNKNOWN_KEY,
            ),
            Some(recomputed) if recomputed != stored.event_hash => self.flag(
                stored,
                recomputed,
                stored.event_hash.clone(),
                "content_modified",
            ),
            Some(_) => {}
        }
        match self.head.clone() {
            Head::Ignored => {}
            Head::Kept(None) if self.total == 0 => {
                self.flag(stored, "a chain head".into(), "none".into(), NOT_IN_HEAD)
            }
            Head::Kept(None) => {}
            Head::Kept(Some(head)) if stored.chain_seq > head.chain_seq => self.flag(
                stored,
                format!("chain_seq <= {}", head.chain_seq),
                format!("chain_seq {}", stored.chain_seq),
                NOT_IN_HEAD,
            ),
            Head::Kept(Some(head))
                if stored.chain_seq == head.chain_seq && stored.event_hash != head.event_hash =>
            {
                self.flag(
                    stored,
                    head.event_hash.clone(),
                    stored.event_hash.clone(),
                    HEAD_MISMATCH,
                )
            }
            Head::Kept(Some(_)) => {}
        }
    }

    /// The verdict, once every row was fed.
    pub fn finish(mut self) -> VerifyChainResponse {
        if let Head::Kept(Some(head)) = &self.head {
            if self.last_seq < head.chain_seq {
                self.tampered.push(TamperedEvent {
                    event_id: uuid::Uuid::nil(),
                    chain_seq: self.last_seq + 1,
                    expected_hash: head.event_hash.clone(),
                    actual_hash: self.previous_hash.clone(),
                    reason: TAIL_TRUNCATED.into(),
                });
            }
        }
        let is_valid = self.tampered.is_empty();
        let never_stored = self.total == 0 && matches!(self.head, Head::Kept(None) | Head::Ignored);
        let message = if never_stored {
            format!(
                "no audit events with correlation_id {:?}",
                self.correlation_id
            )
        } else if is_valid {
            format!("hash chain intact: {} events verified", self.total)
        } else {
            format!(
                "hash chain broken: {} findings ({} of {} events tampered)",
                self.tampered.len(),
                self.flagged_rows,
                self.total
            )
        };
        VerifyChainResponse {
            correlation_id: self.correlation_id,
            is_valid,
            total_events: self.total,
            verified_events: self.total - self.flagged_rows,
            verification_time: chrono::Utc::now(),
            message,
            tampered_events: self.tampered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> AuditEvent {
        AuditEvent::builder("test.event", "corr")
            .category("test")
            .action("act")
            .actor("service", "t")
            .resource("thing", format!("r{n}"))
            .data("n", n)
            .data("pi", 3.25)
            .build()
    }

    fn chain(hasher: &ChainHasher, n: u32) -> Vec<StoredEvent> {
        let mut prev = String::new();
        (1..=n)
            .map(|i| {
                let event = event(i);
                let hash = hasher.hash(&prev, &event);
                let stored = StoredEvent {
                    event_date: event.event_timestamp.date_naive(),
                    event,
                    chain_seq: i64::from(i),
                    previous_event_hash: prev.clone(),
                    event_hash: hash.clone(),
                    hash_algorithm: hasher.algorithm().into(),
                    hash_key_id: hasher.key_id().map(Into::into),
                    legal_hold: false,
                };
                prev = hash;
                stored
            })
            .collect()
    }

    #[test]
    fn canonical_json_sorts_keys_and_is_stable() {
        let e = event(1);
        let text = String::from_utf8(canonical_json(&e)).unwrap();
        assert!(text.starts_with("{\"actor_id\""), "{text}");
        assert_eq!(canonical_json(&e.clone()), canonical_json(&e));
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let h = ChainHasher::sha256();
        let report = h.verify("corr", &chain(&h, 5));
        assert!(report.is_valid, "{report:?}");
        assert_eq!(report.total_events, 5);
    }

    #[test]
    fn an_edited_event_is_reported_alone() {
        let h = ChainHasher::sha256();
        let mut c = chain(&h, 5);
        c[2].event.event_data.insert("n".into(), 99.into());
        let report = h.verify("corr", &c);
        assert!(!report.is_valid);
        assert_eq!(report.tampered_events.len(), 1, "{report:?}");
        assert_eq!(report.tampered_events[0].event_id, c[2].event_id());
        assert_eq!(report.tampered_events[0].reason, "content_modified");
    }

    #[test]
    fn a_deleted_event_breaks_the_next_link_and_sequence() {
        let h = ChainHasher::sha256();
        let mut c = chain(&h, 4);
        c.remove(1);
        let report = h.verify("corr", &c);
        let reasons: Vec<_> = report
            .tampered_events
            .iter()
            .filter(|t| t.event_id == c[1].event_id())
            .map(|t| t.reason.as_str())
            .collect();
        assert_eq!(reasons, ["sequence_gap", "broken_link"]);
    }

    #[test]
    fn rows_are_checked_against_the_head_kept_apart() {
        let h = ChainHasher::sha256();
        let c = chain(&h, 4);
        let head = |i: usize| ChainHead {
            chain_seq: c[i].chain_seq,
            event_hash: c[i].event_hash.clone(),
        };
        let reasons = |report: VerifyChainResponse| -> Vec<(String, i64)> {
            report
                .tampered_events
                .into_iter()
                .map(|t| (t.reason, t.chain_seq))
                .collect()
        };
        assert!(h.verify_with_head("corr", &c, Some(&head(3))).is_valid);
        assert_eq!(
            reasons(h.verify_with_head("corr", &c[..2], Some(&head(3)))),
            [(TAIL_TRUNCATED.to_owned(), 3)]
        );
        assert_eq!(
            reasons(h.verify_with_head("corr", &c, Some(&head(2)))),
            [(NOT_IN_HEAD.to_owned(), 4)]
        );
        let mut other = head(3);
        other.event_hash = "0".repeat(64);
        assert_eq!(
            reasons(h.verify_with_head("corr", &c, Some(&other))),
            [(HEAD_MISMATCH.to_owned(), 4)]
        );
        assert_eq!(
            reasons(h.verify_with_head("corr", &c, None)),
            [(NOT_IN_HEAD.to_owned(), 1)]
        );
    }

    #[test]
    fn hmac_chains_differ_from_plain_ones_and_need_the_key() {
        let plain = ChainHasher::sha256();
        let keyed = ChainHasher::hmac(b"secret".to_vec());
        let e = event(1);
        assert_ne!(plain.hash("", &e), keyed.hash("", &e));
        let c = chain(&keyed, 3);
        assert!(keyed.verify("corr", &c).is_valid);
        assert!(
            !ChainHasher::hmac(b"other".to_vec())
                .verify("corr", &c)
                .is_valid
        );
    }
}
