//! Signed exports: the reference platform's `AuditExportResponse` with our
//! chain proofs inside, written one chunk at a time and verified offline.
//!
//! An export carries, for every event, its chain fields (`chain_seq`,
//! `previous_event_hash`, `event_hash`, `hash_algorithm`, `hash_key_id`); for
//! every correlation it covers, the range of the chain it holds and the chain
//! head the store kept apart from the rows; and a signature made with the
//! checkpoint signer (Ed25519, else HMAC under the chain key) over all of it.
//! `datastorage verify-export FILE` recomputes every event hash and link and
//! checks the signature, so an edited, deleted or reordered event is named
//! without access to the store.
//!
//! What the signature covers (the reference signs only its counts, so its
//! events could be edited under a valid signature): the JCS of the metadata
//! below, whose `events_digest` is the SHA-256 over one line per event, in file
//! order, of the JCS of that event's [`EventProof`]. Content is covered through
//! `event_hash`, which the verifier recomputes from the exported fields.
//!
//! The document streams: events first, then `chains`,
//! `hash_chain_verification` and `export_metadata` (a JSON object's key order
//! does not matter to readers), so the server holds one chunk at a time.

use std::collections::HashMap;

use audit_sdk::{AuditEvent, StoredEvent};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::chain::{ChainHasher, ChainHead};
use crate::domain::checkpoint::{CheckpointError, CheckpointKeys, CheckpointSummary};

/// `export_metadata.proof_format`: the layout the signature covers.
pub const PROOF_FORMAT: &str = "kubernaut-audit-export/v1";
/// Default `limit` of an export (the reference's).
pub const DEFAULT_LIMIT: usize = 1_000;
/// Largest `limit` (the reference's); more is a 413: page with `offset`.
pub const MAX_LIMIT: usize = 10_000;

/// One exported event: the stored event with the export's verdict on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportedEvent {
    /// The event and its chain fields, as `GET /api/v1/audit/events` answers them.
    #[serde(flatten)]
    pub stored: StoredEvent,
    /// Whether the server found this event's hash and link intact at export time.
    pub hash_chain_valid: bool,
    /// Whether `redact_pii` changed this event's content (its hash then cannot
    /// be recomputed from the file; its place in the chain still is checked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// The filters an export applied (signed: a verifier sees what was asked).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueryFilters {
    /// Inclusive lower bound on `event_timestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// Inclusive upper bound on `event_timestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    /// Exact correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Exact category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_category: Option<String>,
    /// Events skipped, in `(correlation_id, chain_seq)` order.
    pub offset: usize,
    /// Most events exported.
    pub limit: usize,
    /// Whether personal data in the events was masked.
    #[serde(default)]
    pub redact_pii: bool,
}

/// The part of one correlation's chain an export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportChain {
    /// The chain.
    pub correlation_id: String,
    /// `chain_seq` of its first exported event.
    pub first_chain_seq: i64,
    /// `chain_seq` of its last exported event.
    pub last_chain_seq: i64,
    /// Events of it in the export.
    pub events: usize,
    /// `event_hash` of its last exported event.
    pub last_event_hash: String,
    /// The chain's head as the store kept it apart from the rows, in the
    /// export's snapshot (absent for a chain written around the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<ExportHead>,
}

/// A chain head in an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportHead {
    /// `chain_seq` of the chain's newest event.
    pub chain_seq: i64,
    /// Its `event_hash`.
    pub event_hash: String,
}

/// `hash_chain_verification`: the server's check at export time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HashChainVerification {
    /// Events checked (every exported event).
    pub total_events_verified: usize,
    /// Events whose hash and link checked out.
    pub valid_chain_events: usize,
    /// Events that did not.
    pub broken_chain_events: usize,
    /// `valid_chain_events` in percent of `total_events_verified` (100 for none).
    pub chain_integrity_percentage: f64,
    /// When the check ran.
    pub verification_timestamp: DateTime<Utc>,
    /// Ids of the events that did not check out.
    #[serde(default)]
    pub tampered_event_ids: Vec<String>,
}

/// `export_metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportMetadata {
    /// When the export was made.
    pub export_timestamp: DateTime<Utc>,
    /// Always `json`.
    pub export_format: String,
    /// What was asked.
    pub query_filters: QueryFilters,
    /// Events in this export.
    pub total_events: usize,
    /// Base64 signature of the signed bytes (see the module documentation).
    pub signature: String,
    /// `ed25519`, `hmac-sha256` or `sha256` (unsigned: the digest only).
    pub signature_algorithm: String,
    /// Id of the signing key (as checkpoints name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Who exported (the authenticated subject).
    pub exported_by: String,
    /// The signed layout, [`PROOF_FORMAT`].
    pub proof_format: String,
    /// Hex SHA-256 over the events' proof lines.
    pub events_digest: String,
    /// The newest signed checkpoint when the export was made, to check the
    /// store against with `datastorage verify --checkpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_checkpoint: Option<CheckpointSummary>,
}

/// A whole export document, as `verify-export` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditExport {
    /// Events in `(correlation_id, chain_seq)` order.
    pub events: Vec<ExportedEvent>,
    /// The part of each chain the export holds.
    pub chains: Vec<ExportChain>,
    /// The server's check at export time.
    pub hash_chain_verification: HashChainVerification,
    /// Filters, counts, digest and signature.
    pub export_metadata: ExportMetadata,
    /// `export_metadata.signature` as a PEM-style block naming its algorithm
    /// and key (with `include_detached_signature=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached_signature: Option<String>,
}

/// What the signature covers of each event.
#[derive(Debug, Serialize)]
struct EventProof<'a> {
    event_id: Uuid,
    correlation_id: &'a str,
    chain_seq: i64,
    event_date: NaiveDate,
    previous_event_hash: &'a str,
    event_hash: &'a str,
    hash_algorithm: &'a str,
    hash_key_id: Option<&'a str>,
    legal_hold: bool,
    hash_chain_valid: bool,
    redacted: bool,
}

impl<'a> EventProof<'a> {
    fn of(e: &'a ExportedEvent) -> Self {
        let s = &e.stored;
        Self {
            event_id: s.event_id(),
            correlation_id: &s.event.correlation_id,
            chain_seq: s.chain_seq,
            event_date: s.event_date,
            previous_event_hash: &s.previous_event_hash,
            event_hash: &s.event_hash,
            hash_algorithm: &s.hash_algorithm,
            hash_key_id: s.hash_key_id.as_deref(),
            legal_hold: s.legal_hold,
            hash_chain_valid: e.hash_chain_valid,
            redacted: e.redacted,
        }
    }
}

/// The running SHA-256 over the events' proof lines.
#[derive(Debug, Default, Clone)]
struct EventsDigest(Sha256);

impl EventsDigest {
    fn add(&mut self, event: &ExportedEvent) {
        let line = serde_json_canonicalizer::to_vec(&EventProof::of(event))
            .expect("proofs always serialise");
        self.0.update(&line);
        self.0.update(b"\n");
    }

    fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// The bytes the signature covers.
fn signed_bytes(
    metadata: &ExportMetadata,
    chains: &[ExportChain],
    check: &HashChainVerification,
) -> Vec<u8> {
    let value = serde_json::json!({
        "proof_format": metadata.proof_format,
        "export_timestamp": metadata.export_timestamp,
        "exported_by": metadata.exported_by,
        "query_filters": metadata.query_filters,
        "total_events": metadata.total_events,
        "events_digest": metadata.events_digest,
        "signature_algorithm": metadata.signature_algorithm,
        "key_id": metadata.key_id,
        "latest_checkpoint": metadata.latest_checkpoint.as_ref().map(|c| c.checkpoint_id),
        "chains": chains,
        // Counts and ids only: a float's spelling is not worth trusting.
        "hash_chain_verification": {
            "total_events_verified": check.total_events_verified,
            "valid_chain_events": check.valid_chain_events,
            "broken_chain_events": check.broken_chain_events,
            "verification_timestamp": check.verification_timestamp,
            "tampered_event_ids": check.tampered_event_ids,
        },
    });
    serde_json_canonicalizer::to_vec(&value).expect("JSON values always canonicalise")
}

/// `detached_signature`: the signature as a PEM-style block.
fn detached(metadata: &ExportMetadata) -> String {
    format!(
        "-----BEGIN SIGNATURE-----\nAlgorithm: {}\nKey-Id: {}\nProof-Format: {}\n\n{}\n-----END SIGNATURE-----",
        metadata.signature_algorithm,
        metadata.key_id.as_deref().unwrap_or("-"),
        metadata.proof_format,
        metadata.signature
    )
}

/// Microsecond precision, as stored timestamps have it, so a timestamp reads
/// back from the file as it was signed.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Where a correlation's chain stands while an export is written or read.
#[derive(Debug)]
struct ChainCursor {
    index: usize,
    last_seq: i64,
    last_hash: String,
}

/// Writes an export one chunk at a time: events first, then the trailer
/// (chains, verification, metadata with the signature). Memory: one chunk,
/// plus one [`ExportChain`] per correlation and the ids of tampered events.
#[derive(Debug)]
pub struct ExportWriter {
    hasher: ChainHasher,
    keys: CheckpointKeys,
    filters: QueryFilters,
    exported_by: String,
    latest_checkpoint: Option<CheckpointSummary>,
    digest: EventsDigest,
    chains: Vec<ExportChain>,
    current: Option<ChainCursor>,
    total: usize,
    tampered: Vec<String>,
}

impl ExportWriter {
    /// A writer for an export of `filters` by `exported_by`.
    pub fn new(
        hasher: ChainHasher,
        keys: CheckpointKeys,
        filters: QueryFilters,
        exported_by: String,
        latest_checkpoint: Option<CheckpointSummary>,
    ) -> Self {
        Self {
            hasher,
            keys,
            filters,
            exported_by,
            latest_checkpoint,
            digest: EventsDigest::default(),
            chains: Vec::new(),
            current: None,
            total: 0,
            tampered: Vec::new(),
        }
    }

    /// The document's opening.
    pub fn start(&self) -> Vec<u8> {
        b"{\"events\":[".to_vec()
    }

    /// The next events (in `(correlation_id, chain_seq)` order) as JSON text,
    /// with `heads` naming the store's head of each correlation starting here.
    pub fn events(
        &mut self,
        heads: Vec<(String, Option<ChainHead>)>,
        events: Vec<StoredEvent>,
    ) -> Vec<u8> {
        let mut heads: HashMap<String, Option<ChainHead>> = heads.into_iter().collect();
        let mut out = Vec::new();
        for stored in events {
            let event = self.check(stored, &mut heads);
            self.digest.add(&event);
            if self.total > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, &event).expect("events always serialise");
            self.total += 1;
        }
        out
    }

    /// Checks one event against its own hash and its predecessor in the
    /// export, records it in its chain and masks it when asked.
    fn check(
        &mut self,
        mut stored: StoredEvent,
        heads: &mut HashMap<String, Option<ChainHead>>,
    ) -> ExportedEvent {
        let corr = stored.event.correlation_id.clone();
        let continues = self
            .current
            .as_ref()
            .is_some_and(|c| self.chains[c.index].correlation_id == corr);
        let content_ok = self
            .hasher
            .rehash(&stored)
            .is_some_and(|h| h == stored.event_hash);
        let link_ok = match (&self.current, continues) {
            (Some(c), true) => {
                stored.chain_seq == c.last_seq + 1 && stored.previous_event_hash == c.last_hash
            }
            // The first exported event of a chain: its predecessor is outside
            // the export, unless it is the chain's first event.
            _ => stored.chain_seq > 1 || stored.previous_event_hash.is_empty(),
        };
        if continues {
            let c = self.current.as_mut().expect("continues implies a chain");
            let chain = &mut self.chains[c.index];
            chain.last_chain_seq = stored.chain_seq;
            chain.events += 1;
            chain.last_event_hash.clone_from(&stored.event_hash);
            c.last_seq = stored.chain_seq;
            c.last_hash.clone_from(&stored.event_hash);
        } else {
            let head = heads.remove(&corr).flatten().map(|h| ExportHead {
                chain_seq: h.chain_seq,
                event_hash: h.event_hash,
            });
            self.chains.push(ExportChain {
                correlation_id: corr,
                first_chain_seq: stored.chain_seq,
                last_chain_seq: stored.chain_seq,
                events: 1,
                last_event_hash: stored.event_hash.clone(),
                head,
            });
            self.current = Some(ChainCursor {
                index: self.chains.len() - 1,
                last_seq: stored.chain_seq,
                last_hash: stored.event_hash.clone(),
            });
        }
        let valid = content_ok && link_ok;
        if !valid {
            self.tampered.push(stored.event_id().to_string());
        }
        let redacted = self.filters.redact_pii && redact_pii(&mut stored.event);
        ExportedEvent {
            stored,
            hash_chain_valid: valid,
            redacted,
        }
    }

    /// The document's end: chains, verification, signed metadata.
    pub fn finish(self, include_detached_signature: bool) -> Vec<u8> {
        let total = self.total;
        let broken = self.tampered.len();
        let check = HashChainVerification {
            total_events_verified: total,
            valid_chain_events: total - broken,
            broken_chain_events: broken,
            chain_integrity_percentage: if total == 0 {
                100.0
            } else {
                (total - broken) as f64 * 100.0 / total as f64
            },
            verification_timestamp: now_micros(),
            tampered_event_ids: self.tampered,
        };
        let (algorithm, key_id) = self.keys.signer();
        let exported_by = if self.filters.redact_pii {
            mask_email(&self.exported_by).unwrap_or(self.exported_by)
        } else {
            self.exported_by
        };
        let mut metadata = ExportMetadata {
            export_timestamp: now_micros(),
            export_format: "json".into(),
            query_filters: self.filters,
            total_events: total,
            signature: String::new(),
            signature_algorithm: algorithm.into(),
            key_id,
            exported_by,
            proof_format: PROOF_FORMAT.into(),
            events_digest: self.digest.finish(),
            latest_checkpoint: self.latest_checkpoint,
        };
        let message = signed_bytes(&metadata, &self.chains, &check);
        metadata.signature = BASE64.encode(self.keys.sign_message(&message));
        let mut out = b"],\"chains\":".to_vec();
        serde_json::to_writer(&mut out, &self.chains).expect("chains always serialise");
        out.extend_from_slice(b",\"hash_chain_verification\":");
        serde_json::to_writer(&mut out, &check).expect("checks always serialise");
        out.extend_from_slice(b",\"export_metadata\":");
        serde_json::to_writer(&mut out, &metadata).expect("metadata always serialises");
        if include_detached_signature {
            out.extend_from_slice(b",\"detached_signature\":");
            serde_json::to_writer(&mut out, &detached(&metadata)).expect("strings serialise");
        }
        out.push(b'}');
        out
    }
}

// --- PII redaction (the reference's rules) -------------------------------

/// `event_data` keys the reference masks.
const PII_KEYS: &[&str] = &["user_email", "source_ip", "phone_number"];

/// Masks personal data in place (`event_data.user_email`, `source_ip`,
/// `phone_number`, and `actor_ip`); answers whether anything changed.
fn redact_pii(event: &mut AuditEvent) -> bool {
    let mut changed = false;
    for key in PII_KEYS {
        if let Some(serde_json::Value::String(v)) = event.event_data.get_mut(*key) {
            let masked = mask_email(v)
                .or_else(|| mask_ip(v))
                .unwrap_or_else(|| mask_digits(v));
            changed |= masked != *v;
            *v = masked;
        }
    }
    if let Some(ip) = &mut event.actor_ip {
        let masked = mask_ip(ip).unwrap_or_else(|| mask_digits(ip));
        changed |= masked != *ip;
        *ip = masked;
    }
    changed
}

/// `user@domain.com` → `u***@d***.com`; `None` when not an address.
fn mask_email(v: &str) -> Option<String> {
    let (local, domain) = v.split_once('@')?;
    let (host, tld) = domain.rsplit_once('.')?;
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    Some(format!("{}***@{}***.{tld}", first(local), first(host)))
}

/// `192.168.1.1` → `192.*.*.*`, an IPv6 address keeps its first group.
fn mask_ip(v: &str) -> Option<String> {
    match v.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(ip) => Some(format!("{}.*.*.*", ip.octets()[0])),
        std::net::IpAddr::V6(ip) => Some(format!("{:x}:*", ip.segments()[0])),
    }
}

/// Every digit after the first three characters becomes `*`.
fn mask_digits(v: &str) -> String {
    v.chars()
        .enumerate()
        .map(|(i, c)| if i >= 3 && c.is_ascii_digit() { '*' } else { c })
        .collect()
}

// --- Offline verification -------------------------------------------------

/// What is wrong with one exported event (or with a chain's range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The chain.
    pub correlation_id: String,
    /// The event's (or, for missing events, the first missing) `chain_seq`.
    pub chain_seq: i64,
    /// The event, when it is in the file.
    pub event_id: Option<Uuid>,
    /// `content_modified`, `broken_link`, `missing_events`, `reordered`,
    /// `duplicate`, `unknown_key`, `not_in_chains`, `chain_mismatch`.
    pub kind: &'static str,
    /// What differs.
    pub detail: String,
}

/// The signature's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Signed and intact.
    Valid,
    /// Intact, but only digested: the server had no signing key.
    Unsigned,
    /// Does not verify, or names a key not given.
    Refused(CheckpointError),
}

/// `verify-export`'s verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Events in the file.
    pub events: usize,
    /// Events whose content could not be recomputed because `redact_pii` masked it.
    pub redacted: usize,
    /// The signature's verdict.
    pub signature: SignatureCheck,
    /// Every event or range that does not check out.
    pub findings: Vec<Finding>,
}

impl ExportReport {
    /// Whether the file is intact and its signature verifies (or it is
    /// knowingly unsigned).
    pub fn is_valid(&self) -> bool {
        self.findings.is_empty() && !matches!(self.signature, SignatureCheck::Refused(_))
    }
}

/// Verifies an export offline: every event hash recomputed with `hasher`
/// (which must hold the HMAC keys of keyed chains); the file order of each
/// chain; each chain's events, sorted by `chain_seq`, for gaps, duplicates and
/// links, and their range against `chains`; and the signature with `keys`.
pub fn verify_export(
    doc: &AuditExport,
    hasher: &ChainHasher,
    keys: &CheckpointKeys,
) -> ExportReport {
    let mut findings = Vec::new();
    let mut redacted = 0;
    let mut digest = EventsDigest::default();
    let mut per_chain: HashMap<&str, Vec<&StoredEvent>> = HashMap::new();
    let finding = |s: &StoredEvent, kind: &'static str, chain_seq: i64, detail: String| Finding {
        correlation_id: s.event.correlation_id.clone(),
        chain_seq,
        event_id: Some(s.event_id()),
        kind,
        detail,
    };
    for event in &doc.events {
        digest.add(event);
        let s = &event.stored;
        let chain = per_chain
            .entry(s.event.correlation_id.as_str())
            .or_default();
        if let Some(before) = chain.last().filter(|b| b.chain_seq >= s.chain_seq) {
            findings.push(finding(
                s,
                "reordered",
                s.chain_seq,
                format!(
                    "comes after chain_seq {} ({}) in the file",
                    before.chain_seq,
                    before.event_id()
                ),
            ));
        }
        chain.push(s);
        if event.redacted {
            redacted += 1;
            continue;
        }
        match hasher.rehash(s) {
            None => findings.push(finding(
                s,
                "unknown_key",
                s.chain_seq,
                format!(
                    "hashed with {} key {}, which was not given (--hmac-key-file)",
                    s.hash_algorithm,
                    s.hash_key_id.as_deref().unwrap_or("?")
                ),
            )),
            Some(h) if h != s.event_hash => findings.push(finding(
                s,
                "content_modified",
                s.chain_seq,
                format!(
                    "its fields recompute to {h}, the file says {}",
                    s.event_hash
                ),
            )),
            Some(_) => {}
        }
    }
    for chain in &doc.chains {
        let corr = chain.correlation_id.as_str();
        let range = |from: i64, to: i64| {
            if from == to {
                format!("chain_seq {from} is")
            } else {
                format!("chain_seq {from}..={to} are")
            }
        };
        let missing = |chain_seq: i64, detail: String| Finding {
            correlation_id: corr.to_owned(),
            chain_seq,
            event_id: None,
            kind: "missing_events",
            detail,
        };
        let Some(mut events) = per_chain.remove(corr) else {
            findings.push(missing(
                chain.first_chain_seq,
                format!(
                    "{} missing (the whole chain)",
                    range(chain.first_chain_seq, chain.last_chain_seq)
                ),
            ));
            continue;
        };
        events.sort_by_key(|e| e.chain_seq);
        let first = events[0];
        if first.chain_seq > chain.first_chain_seq {
            findings.push(missing(
                chain.first_chain_seq,
                format!(
                    "{} missing at the chain's start",
                    range(chain.first_chain_seq, first.chain_seq - 1)
                ),
            ));
        } else if first.chain_seq < chain.first_chain_seq {
            findings.push(finding(
                first,
                "chain_mismatch",
                first.chain_seq,
                format!(
                    "the export's chain starts at chain_seq {}",
                    chain.first_chain_seq
                ),
            ));
        }
        for pair in events.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            if next.chain_seq == prev.chain_seq {
                findings.push(finding(
                    next,
                    "duplicate",
                    next.chain_seq,
                    format!("chain_seq {} appears twice", next.chain_seq),
                ));
            } else if next.chain_seq > prev.chain_seq + 1 {
                findings.push(missing(
                    prev.chain_seq + 1,
                    format!(
                        "{} missing between {} and {}",
                        range(prev.chain_seq + 1, next.chain_seq - 1),
                        prev.event_id(),
                        next.event_id()
                    ),
                ));
            } else if next.previous_event_hash != prev.event_hash {
                findings.push(finding(
                    next,
                    "broken_link",
                    next.chain_seq,
                    format!(
                        "previous_event_hash {} is not the hash {} of chain_seq {}",
                        next.previous_event_hash, prev.event_hash, prev.chain_seq
                    ),
                ));
            }
        }
        let last = events[events.len() - 1];
        if last.chain_seq < chain.last_chain_seq {
            findings.push(missing(
                last.chain_seq + 1,
                format!(
                    "{} missing at the chain's end",
                    range(last.chain_seq + 1, chain.last_chain_seq)
                ),
            ));
        } else if last.chain_seq > chain.last_chain_seq || last.event_hash != chain.last_event_hash
        {
            findings.push(finding(
                last,
                "chain_mismatch",
                last.chain_seq,
                format!(
                    "the export's chain ends at chain_seq {} with {}",
                    chain.last_chain_seq, chain.last_event_hash
                ),
            ));
        }
    }
    for events in per_chain.values() {
        for s in events {
            findings.push(finding(
                s,
                "not_in_chains",
                s.chain_seq,
                "its correlation is not among the export's chains".into(),
            ));
        }
    }
    findings
        .sort_by(|a, b| (&a.correlation_id, a.chain_seq).cmp(&(&b.correlation_id, b.chain_seq)));
    let metadata = &doc.export_metadata;
    let signature =
        if digest.finish() != metadata.events_digest || metadata.total_events != doc.events.len() {
            SignatureCheck::Refused(CheckpointError::DigestMismatch)
        } else {
            let message = signed_bytes(metadata, &doc.chains, &doc.hash_chain_verification);
            match BASE64.decode(&metadata.signature) {
                Err(_) => SignatureCheck::Refused(CheckpointError::BadSignature),
                Ok(sig) => match keys.verify_message(
                    &metadata.signature_algorithm,
                    metadata.key_id.as_deref(),
                    &message,
                    &sig,
                ) {
                    Ok(true) => SignatureCheck::Valid,
                    Ok(false) => SignatureCheck::Unsigned,
                    Err(e) => SignatureCheck::Refused(e),
                },
            }
        };
    ExportReport {
        events: doc.events.len(),
        redacted,
        signature,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_masked_as_the_reference_masks_it() {
        assert_eq!(mask_email("user@domain.com").unwrap(), "u***@d***.com");
        assert_eq!(mask_ip("192.168.1.1").unwrap(), "192.*.*.*");
        assert_eq!(mask_digits("+1-555-1234"), "+1-***-****");
        let mut event = AuditEvent::builder("t.e", "c")
            .data("user_email", "jane@example.org")
            .data("note", "jane@example.org")
            .build();
        assert!(redact_pii(&mut event));
        assert_eq!(event.event_data["user_email"], "j***@e***.org");
        assert_eq!(event.event_data["note"], "jane@example.org");
    }
}
