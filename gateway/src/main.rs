//! `gateway`: the command line. Everything else lives in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::Config;
use gateway::remediation::crd::crd_yaml;
use gateway::startup::Application;
use gateway::telemetry;
use service_kit::shutdown;

/// Signal ingestion of the remediation platform: AlertManager webhooks and
/// Kubernetes Warning events in, deduplicated RemediationRequests out, every
/// step audited in DataStorage.
///
/// Configuration is layered: built-in defaults, then the YAML file given by
/// --config (or CONFIG_PATH), then GATEWAY_* environment variables, with `__`
/// separating nested keys (GATEWAY_AUDIT__DATA_STORAGE_URL=http://localhost:8080).
/// Unknown keys are an error.
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
    /// Print the RemediationRequest CRD as YAML, or write it to --output.
    Crdgen {
        /// File to write instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Print the effective configuration as JSON and exit.
    PrintConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Crdgen { output: None } => {
            print!("{}", crd_yaml());
            Ok(())
        }
        Command::Crdgen {
            output: Some(path), ..
        } => {
            std::fs::write(&path, crd_yaml()).with_context(|| format!("writing {}", path.display()))
        }
        Command::PrintConfig => {
            let config = Config::load(cli.config.as_deref()).context("invalid configuration")?;
            println!("{}", serde_json::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Serve => {
            let config = Config::load(cli.config.as_deref()).context("invalid configuration")?;
            telemetry::init_logging(&config.log);
            let app = Application::build(config).await?;
            app.run_until_stopped(shutdown::on_signal()).await
        }
    }
}
