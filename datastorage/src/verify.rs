//! `datastorage verify --checkpoint FILE`: a store against an exported checkpoint.

use std::path::Path;

use anyhow::Context;
use datastorage::config::{Backend, Config};
use datastorage::domain::checkpoint::SignedCheckpoint;
use datastorage::domain::verification::check_against_checkpoint;
use datastorage::startup::{chain_hasher, checkpoint_keys, open_store};

/// Exit code when the store differs from the checkpoint.
const DRIFTED: i32 = 1;
/// Exit code when the checkpoint itself is not to be trusted.
const UNTRUSTED: i32 = 2;

/// Runs the check and answers the process exit code.
pub async fn run(mut config: Config, file: &Path, allow_appended: bool) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading checkpoint {}", file.display()))?;
    let checkpoint: SignedCheckpoint = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a checkpoint document", file.display()))?;
    let hasher = chain_hasher(&config.chain)?;
    let keys = checkpoint_keys(&config.chain, hasher.clone())?;
    let summary = &checkpoint.summary;
    match keys.verify(&checkpoint) {
        Ok(true) => println!(
            "checkpoint {} ({}, {} chains, {} events): {} signature valid (key {})",
            summary.checkpoint_id,
            summary.created_at,
            summary.head_count,
            summary.event_count,
            summary.algorithm,
            summary.key_id.as_deref().unwrap_or("-"),
        ),
        Ok(false) => println!(
            "checkpoint {} ({}, {} chains, {} events): UNSIGNED (no key was configured when \
             it was taken), so only its digest was checked",
            summary.checkpoint_id, summary.created_at, summary.head_count, summary.event_count,
        ),
        Err(e) => {
            eprintln!("checkpoint {} refused: {e}", summary.checkpoint_id);
            return Ok(UNTRUSTED);
        }
    }
    // Read only: no migrations, no partition work on the store being checked.
    if config.store.backend == Backend::Postgres {
        config.store.postgres.migrate_on_start = false;
        config.store.postgres.manage_partitions = false;
    }
    let store = open_store(&config, hasher.clone()).await?;
    let found = check_against_checkpoint(
        store.as_ref(),
        &hasher,
        &checkpoint,
        config.chain.verify_chunk_size,
        allow_appended,
    )
    .await;
    store.close().await;
    let found = found?;
    for d in &found {
        println!(
            "{:<8} {}  from chain_seq {} ({} findings)",
            format!("{:?}", d.drift).to_lowercase(),
            d.correlation_id,
            d.chain_seq,
            d.findings
        );
    }
    if found.is_empty() {
        println!("store matches the checkpoint");
        Ok(0)
    } else {
        let names: std::collections::BTreeSet<&str> =
            found.iter().map(|d| d.correlation_id.as_str()).collect();
        println!("{} correlations differ from the checkpoint", names.len());
        Ok(DRIFTED)
    }
}
