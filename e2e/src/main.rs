//! `e2e`: the end-to-end tool. `e2e preflight` checks the manifests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use e2e::preflight;

/// End-to-end tooling of the audit pipeline.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render an overlay with `kubectl kustomize` and check it for the
    /// misconfigurations that break deployments (Service URLs, host paths,
    /// RBAC verbs, probes, images, Kind port mappings).
    Preflight {
        /// The kustomize directory to check.
        #[arg(long, default_value = "deploy/overlays/kind")]
        overlay: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Preflight { overlay } => {
            let root = preflight::repo_root();
            let overlay = if overlay.is_absolute() {
                overlay
            } else {
                root.join(overlay)
            };
            match preflight::check_overlay(&root, &overlay) {
                Ok((objects, findings)) if findings.is_empty() => {
                    let total: usize = objects.kinds.values().sum();
                    println!(
                        "preflight: {} passed ({total} objects checked)",
                        overlay.display()
                    );
                    ExitCode::SUCCESS
                }
                Ok((_, findings)) => {
                    for f in &findings {
                        eprintln!("{f}");
                    }
                    eprintln!(
                        "preflight: {} problem(s) in {}",
                        findings.len(),
                        overlay.display()
                    );
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("preflight: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
