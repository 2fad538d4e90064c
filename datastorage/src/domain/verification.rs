//! Verifying a stored chain without loading it: the store streams the head and
//! then bounded chunks of rows (one snapshot), and a [`ChainVerifier`] checks
//! each chunk on the blocking pool (hashing is CPU work) as it arrives.

use audit_sdk::api::VerifyChainResponse;

use crate::domain::chain::{ChainHasher, ChainVerifier, Head};
use crate::store::{ChainPart, EventStore, StoreError};

/// Rows per chunk when the configuration does not say (`chain.verify_chunk_size`).
pub const DEFAULT_CHUNK_SIZE: usize = 1000;

/// Verifies `correlation_id`'s chain against its head, `chunk_size` rows at a time.
pub async fn verify_chain(
    store: &dyn EventStore,
    hasher: &ChainHasher,
    correlation_id: &str,
    chunk_size: usize,
) -> Result<VerifyChainResponse, StoreError> {
    let mut parts = store.chain_chunks(correlation_id, chunk_size).await?;
    let head = match parts.recv().await {
        Some(Ok(ChainPart::Head(head))) => head,
        Some(Err(e)) => return Err(e),
        Some(Ok(ChainPart::Events(_))) | None => {
            return Err(StoreError::Internal(
                "chain reader ended before the chain head".into(),
            ))
        }
    };
    feed_all(
        parts,
        ChainVerifier::new(hasher.clone(), correlation_id, Head::Kept(head)),
    )
    .await
}

/// Feeds every remaining chunk of `parts` to `verifier` on the blocking pool.
async fn feed_all(
    mut parts: crate::store::ChainChunks,
    mut verifier: ChainVerifier,
) -> Result<VerifyChainResponse, StoreError> {
    while let Some(part) = parts.recv().await {
        let ChainPart::Events(chunk) = part? else {
            return Err(StoreError::Internal("a second chain head".into()));
        };
        verifier = tokio::task::spawn_blocking(move || {
            verifier.feed(&chunk);
            verifier
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    }
    Ok(verifier.finish())
}

/// How a correlation differs from what a checkpoint recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Drift {
    /// Events the checkpoint covers are gone (a deleted tail, a gap, a whole
    /// correlation).
    Lost,
    /// Events the checkpoint does not cover: stored after it, or in a
    /// correlation it does not know.
    Gained,
    /// Events the checkpoint covers are no longer what was hashed (edited,
    /// relinked, replaced).
    Changed,
}

/// One finding of [`check_against_checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CorrelationDrift {
    /// The correlation.
    pub correlation_id: String,
    /// What happened to it.
    pub drift: Drift,
    /// The first `chain_seq` concerned.
    pub chain_seq: i64,
    /// How many findings of this kind it has.
    pub findings: usize,
}

/// Compares the store with `checkpoint`, chain by chain in chunks of
/// `chunk_size` rows, reading the rows themselves (not the store's chain
/// heads, which whoever rewrote the rows may have rewritten too). Names every
/// correlation that lost, gained or changed events since the checkpoint; with
/// `allow_appended`, events stored after it that chain correctly are not
/// reported. The checkpoint's signature is checked by the caller first
/// ([`crate::domain::checkpoint::CheckpointKeys::verify`]).
pub async fn check_against_checkpoint(
    store: &dyn EventStore,
    hasher: &ChainHasher,
    checkpoint: &crate::domain::checkpoint::SignedCheckpoint,
    chunk_size: usize,
    allow_appended: bool,
) -> Result<Vec<CorrelationDrift>, StoreError> {
    use crate::domain::chain::{ChainHead, NOT_IN_HEAD, TAIL_TRUNCATED};
    let mut found = Vec::new();
    let mut covered = std::collections::HashSet::new();
    let classify =
        |found: &mut Vec<CorrelationDrift>,
         correlation_id: &str,
         report: VerifyChainResponse,
         appended_ok: bool| {
            let mut kinds: std::collections::BTreeMap<Drift, (i64, usize)> = Default::default();
            for t in &report.tampered_events {
                let drift = match t.reason.as_str() {
                    TAIL_TRUNCATED | "sequence_gap" => Drift::Lost,
                    NOT_IN_HEAD if appended_ok => continue,
                    NOT_IN_HEAD => Drift::Gained,
                    _ => Drift::Changed,
                };
                let entry = kinds.entry(drift).or_insert((t.chain_seq, 0));
                entry.0 = entry.0.min(t.chain_seq);
                entry.1 += 1;
            }
            found.extend(kinds.into_iter().map(|(drift, (chain_seq, findings))| {
                CorrelationDrift {
                    correlation_id: correlation_id.to_owned(),
                    drift,
                    chain_seq,
                    findings,
                }
            }));
        };
    for head in &checkpoint.heads {
        covered.insert(head.correlation_id.as_str());
        let expected = ChainHead {
            chain_seq: head.chain_seq,
            event_hash: head.event_hash.clone(),
        };
        let report = verify_rows(
            store,
            hasher,
            &head.correlation_id,
            chunk_size,
            Head::Kept(Some(expected)),
        )
        .await?;
        classify(&mut found, &head.correlation_id, report, allow_appended);
    }
    for correlation_id in store.correlation_ids().await? {
        if covered.contains(correlation_id.as_str()) {
            continue;
        }
        if allow_appended {
            // A chain begun after the checkpoint: it must still verify.
            let report =
                verify_rows(store, hasher, &correlation_id, chunk_size, Head::Ignored).await?;
            classify(&mut found, &correlation_id, report, true);
        } else {
            found.push(CorrelationDrift {
                correlation_id,
                drift: Drift::Gained,
                chain_seq: 1,
                findings: 1,
            });
        }
    }
    Ok(found)
}

/// The rows of one chain checked against `head` (the store's own head ignored).
async fn verify_rows(
    store: &dyn EventStore,
    hasher: &ChainHasher,
    correlation_id: &str,
    chunk_size: usize,
    head: Head,
) -> Result<VerifyChainResponse, StoreError> {
    let mut parts = store.chain_chunks(correlation_id, chunk_size).await?;
    // The store's own head is not what the rows are compared with here.
    match parts.recv().await {
        Some(Ok(ChainPart::Head(_))) | None => {}
        Some(Err(e)) => return Err(e),
        Some(Ok(ChainPart::Events(_))) => {
            return Err(StoreError::Internal(
                "chain rows before the chain head".into(),
            ))
        }
    }
    feed_all(
        parts,
        ChainVerifier::new(hasher.clone(), correlation_id, head),
    )
    .await
}
