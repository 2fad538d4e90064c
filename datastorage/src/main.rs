//! `datastorage`: the command line. Everything else lives in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use datastorage::config::Config;
use datastorage::startup::{chain_hasher, checkpoint_keys, open_store, Application};
use datastorage::telemetry;
use service_kit::shutdown;

mod verify;
mod verify_export;

/// mimalloc instead of glibc's malloc: batch ingest allocates and frees many
/// small strings and maps per event from several threads, and glibc spent
/// about a fifth of DataStorage's CPU in malloc, free and chunk consolidation
/// (perf, `postgres_ingest` bench). The benches declare the same allocator,
/// so they measure what this binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Central audit event store of the remediation platform.
///
/// Configuration is layered: built-in defaults, then the YAML file given by
/// --config (or CONFIG_PATH), then DATASTORAGE_* environment variables, with
/// `__` separating nested keys (DATASTORAGE_SERVER__API_PORT=9000). Unknown keys
/// are an error. With no configuration at all, events are stored in
/// ./data/audit.db and the API listens on 8080, health on 8081, metrics on 9090.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// YAML configuration file.
    #[arg(long, short, env = "CONFIG_PATH", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending schema migrations and exit.
    Migrate,
    /// Print the effective configuration as YAML-compatible JSON and exit.
    PrintConfig,
    /// Take a signed checkpoint of every chain head now and print it (the
    /// server also takes them every chain.checkpoint_interval and every
    /// chain.checkpoint_every_events events, or the last one's chain count).
    Checkpoint,
    /// Check the configured database offline against an exported checkpoint
    /// (GET /api/v1/audit/checkpoints/latest saved to a file).
    ///
    /// The checkpoint's signature is checked first with the configured keys
    /// (chain.hmac_key_file and chain.verify_only_key_files for HMAC
    /// checkpoints, chain.checkpoint_public_key_files or the signing key for
    /// Ed25519 ones); a checkpoint that does not verify is refused (exit 2).
    /// Then every chain's rows are read in chunks and every correlation that
    /// lost, gained or changed events since the checkpoint is named, one line
    /// each (exit 1 when any; 0 when the store matches).
    Verify {
        /// The exported checkpoint (JSON).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Accept events stored after the checkpoint when they chain
        /// correctly (a live store grows); without it any new event is named.
        #[arg(long)]
        allow_appended: bool,
    },
    /// Check an exported file (GET /api/v1/audit/export saved to a file)
    /// offline, without the store.
    ///
    /// Every event's hash is recomputed from its fields (keyed chains need
    /// their HMAC key), every chain's events are checked for order, gaps and
    /// links and against the export's chain ranges, and the export's signature
    /// is checked with the Ed25519 public key (--public-key) or the HMAC key
    /// (--hmac-key-file); without either flag the configured chain keys are
    /// used. Every edited, missing or reordered event is named, one line each
    /// (exit 1); a signature that does not verify is exit 2; 0 when intact.
    VerifyExport {
        /// The exported file (JSON).
        file: PathBuf,
        /// PEM Ed25519 public key of the checkpoint signer (repeatable).
        #[arg(long = "public-key")]
        public_key: Vec<PathBuf>,
        /// HMAC key file of the chains (repeatable: the first is current, the
        /// others retired keys); also checks an HMAC-signed export.
        #[arg(long = "hmac-key-file")]
        hmac_key_file: Vec<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("invalid configuration")?;
    telemetry::init_logging(&config.log);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run_until_stopped(shutdown::on_signal()).await
        }
        Command::Migrate if config.store.backend == datastorage::config::Backend::Postgres => {
            // Migrates even when `store.postgres.migrate_on_start` is off (a Job's work).
            let pg = &config.store.postgres;
            let ran = datastorage::store::postgres::migrate(pg)
                .await
                .with_context(|| format!("migrating PostgreSQL at {}:{}", pg.host, pg.port))?;
            tracing::info!(applied = ran, "migrations applied");
            Ok(())
        }
        Command::Migrate => {
            let hasher = datastorage::domain::chain::ChainHasher::sha256();
            let store = open_store(&config, hasher).await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::PrintConfig => {
            println!("{}", serde_json::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Checkpoint => {
            let hasher = chain_hasher(&config.chain)?;
            let keys = checkpoint_keys(&config.chain, hasher.clone())?;
            let store = open_store(&config, hasher).await?;
            let taken = datastorage::checkpointer::take(store.as_ref(), &keys).await;
            let latest = store.checkpoint(None).await;
            store.close().await;
            taken?;
            match latest? {
                Some(checkpoint) => println!("{}", serde_json::to_string_pretty(&checkpoint)?),
                None => anyhow::bail!("the store has no chains to checkpoint"),
            }
            Ok(())
        }
        Command::Verify {
            checkpoint,
            allow_appended,
        } => {
            let code = verify::run(config, &checkpoint, allow_appended).await?;
            std::process::exit(code)
        }
        Command::VerifyExport {
            file,
            public_key,
            hmac_key_file,
        } => {
            let code = verify_export::run(&config, &file, &public_key, &hmac_key_file)?;
            std::process::exit(code)
        }
    }
}
