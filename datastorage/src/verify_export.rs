//! `datastorage verify-export FILE`: an exported file checked offline, without
//! the store: every event hash and link recomputed, the signature checked.

use std::path::{Path, PathBuf};

use anyhow::Context;
use datastorage::config::Config;
use datastorage::domain::chain::ChainHasher;
use datastorage::domain::checkpoint::CheckpointKeys;
use datastorage::domain::export::{verify_export, AuditExport, SignatureCheck};
use datastorage::startup::{chain_hasher, checkpoint_keys};

/// Exit code when events are edited, missing or out of order.
const TAMPERED: i32 = 1;
/// Exit code when the signature does not verify (or the file is no export).
const UNTRUSTED: i32 = 2;

/// The keys given on the command line, else the configuration's.
fn keys(
    config: &Config,
    public_keys: &[PathBuf],
    hmac_key_files: &[PathBuf],
) -> anyhow::Result<(ChainHasher, CheckpointKeys)> {
    if public_keys.is_empty() && hmac_key_files.is_empty() {
        let hasher = chain_hasher(&config.chain)?;
        let keys = checkpoint_keys(&config.chain, hasher.clone())?;
        return Ok((hasher, keys));
    }
    let mut hasher = ChainHasher::sha256();
    for (i, path) in hmac_key_files.iter().enumerate() {
        hasher = if i == 0 {
            ChainHasher::from_key_file(path)
        } else {
            hasher.with_verify_only_file(path)
        }
        .with_context(|| format!("reading --hmac-key-file {}", path.display()))?;
    }
    let mut keys = CheckpointKeys::new(hasher.clone());
    for path in public_keys {
        keys = keys
            .with_public_key_file(path)
            .map_err(|e| anyhow::anyhow!("reading --public-key {}: {e}", path.display()))?;
    }
    Ok((hasher, keys))
}

/// Runs the check and answers the process exit code.
pub fn run(
    config: &Config,
    file: &Path,
    public_keys: &[PathBuf],
    hmac_key_files: &[PathBuf],
) -> anyhow::Result<i32> {
    let (hasher, keys) = keys(config, public_keys, hmac_key_files)?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let doc: AuditExport = match serde_json::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => {
            eprintln!("{} is not an audit export: {e}", file.display());
            return Ok(UNTRUSTED);
        }
    };
    let report = verify_export(&doc, &hasher, &keys);
    for f in &report.findings {
        let event = f
            .event_id
            .map_or_else(|| "-".to_owned(), |id| id.to_string());
        println!(
            "{:<17} {}  chain_seq {}  event {}: {}",
            f.kind, f.correlation_id, f.chain_seq, event, f.detail
        );
    }
    let m = &doc.export_metadata;
    let signature = match &report.signature {
        SignatureCheck::Valid => format!(
            "signature valid ({}, key {})",
            m.signature_algorithm,
            m.key_id.as_deref().unwrap_or("-")
        ),
        SignatureCheck::Unsigned => {
            "UNSIGNED (the server had no signing key): only its digest was checked".to_owned()
        }
        SignatureCheck::Refused(e) => format!("signature REFUSED: {e}"),
    };
    println!(
        "export of {} ({} events, {} chains, {} redacted): {signature}",
        m.export_timestamp,
        report.events,
        doc.chains.len(),
        report.redacted
    );
    if !report.findings.is_empty() {
        println!("{} findings: the export was altered", report.findings.len());
        Ok(TAMPERED)
    } else if matches!(report.signature, SignatureCheck::Refused(_)) {
        Ok(UNTRUSTED)
    } else {
        println!("every event hash, link and range checks out");
        Ok(0)
    }
}
