//! `datastorage`: the command line. Everything else lives in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use datastorage::config::Config;
use datastorage::startup::{open_store, Application};
use datastorage::telemetry;
use service_kit::shutdown;

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
    }
}
