//! `e2e`: the end-to-end tool of the audit pipeline.
//!
//! `preflight` checks the manifests; `up`, `test`, `down` and `logs` drive the
//! whole stack on the `local` platform (the service binaries as processes) or
//! the `kind` platform (a Kind cluster).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use e2e::platform::kind::{self, KindOptions, KindPlatform};
use e2e::platform::local::{default_bin_dir, LocalBackend, LocalOptions, LocalPlatform};
use e2e::platform::{Component, Platform};
use e2e::suite::{self, PlatformChoice};
use e2e::{preflight, scenarios};

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
    /// Start the stack and keep it running (local: until Ctrl-C; kind: the
    /// cluster stays until `e2e down`).
    Up {
        #[command(flatten)]
        platform: PlatformArg,
        /// DataStorage's store on the local platform.
        #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
        backend: Backend,
    },
    /// Run the scenario suite and print the timing table (exit 1 on failure).
    Test {
        #[command(flatten)]
        platform: PlatformArg,
        /// Run only the scenarios whose name contains this text.
        filter: Option<String>,
    },
    /// Delete the Kind cluster (a local stack stops with its `e2e up`).
    Down {
        #[command(flatten)]
        platform: PlatformArg,
    },
    /// Print every `bench-result` line found in benchmark output files as one
    /// table (what `make bench` ends with).
    BenchTable {
        /// Files holding benchmark output.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the logs of a component of the running stack.
    Logs {
        #[command(flatten)]
        platform: PlatformArg,
        /// Which component.
        #[arg(value_enum, default_value_t = Which::Gateway)]
        component: Which,
    },
}

#[derive(Debug, clap::Args)]
struct PlatformArg {
    /// Where the stack runs.
    #[arg(long, value_enum, env = "E2E_PLATFORM", default_value_t = PlatformChoice::Local)]
    platform: PlatformChoice,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Which {
    Datastorage,
    Gateway,
    Postgresql,
}

impl From<Which> for Component {
    fn from(w: Which) -> Self {
        match w {
            Which::Datastorage => Self::DataStorage,
            Which::Gateway => Self::Gateway,
            Which::Postgresql => Self::Postgres,
        }
    }
}

/// Where `e2e up --platform local` keeps its files (fixed, so `e2e logs` finds them).
fn local_up_dir(root: &Path) -> PathBuf {
    root.join("target/e2e/local-up")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = preflight::repo_root();
    match cli.command {
        Command::Preflight { overlay } => run_preflight(&root, overlay),
        Command::BenchTable { files } => bench_table(&files),
        command => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            match runtime.block_on(run(command, &root)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("e2e: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(command: Command, root: &Path) -> anyhow::Result<ExitCode> {
    match command {
        Command::Preflight { .. } | Command::BenchTable { .. } => {
            unreachable!("handled without a runtime")
        }
        Command::Test { platform, filter } => {
            let scenarios = scenarios::select(filter.as_deref());
            anyhow::ensure!(!scenarios.is_empty(), "no scenario matches {filter:?}");
            if platform.platform == PlatformChoice::Kind {
                kind::check_prerequisites()?;
            }
            let run_dir = e2e::platform::run_dir(root);
            let summary = suite::run(platform.platform, &scenarios, &run_dir).await;
            println!("\n{summary}\nrun directory: {}", run_dir.display());
            Ok(if summary.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Up { platform, backend } => match platform.platform {
            PlatformChoice::Local => up_local(root, backend).await,
            PlatformChoice::Kind => {
                kind::check_prerequisites()?;
                let mut options = KindOptions::from_env(root);
                // `up` hands the cluster over to the user: `e2e down` deletes it.
                options.keep_cluster = true;
                let platform = KindPlatform::up(options).await?;
                print_endpoints(&platform);
                println!("the cluster stays up; delete it with `e2e down --platform kind`");
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Down { platform } => match platform.platform {
            PlatformChoice::Local => {
                println!("a local stack lives as long as its `e2e up` (stop that with Ctrl-C)");
                Ok(ExitCode::SUCCESS)
            }
            PlatformChoice::Kind => {
                kind::check_prerequisites()?;
                kind::delete_cluster(&KindOptions::from_env(root)).await?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Logs {
            platform,
            component,
        } => {
            let text = match platform.platform {
                PlatformChoice::Local => local_logs(root, component)?,
                PlatformChoice::Kind => {
                    kind::check_prerequisites()?;
                    kind::logs(&KindOptions::from_env(root), component.into()).await?
                }
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn up_local(root: &Path, backend: Backend) -> anyhow::Result<ExitCode> {
    let run_dir = local_up_dir(root);
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("clearing {}", run_dir.display()))?;
    }
    let platform = LocalPlatform::up(LocalOptions {
        backend: match backend {
            Backend::Sqlite => LocalBackend::Sqlite,
            Backend::Postgres => LocalBackend::Postgres,
        },
        bin_dir: default_bin_dir()?,
        run_dir: run_dir.clone(),
    })
    .await?;
    print_endpoints(&platform);
    let tokens = run_dir.join("tokens.env");
    write_tokens(&tokens, &platform)?;
    println!(
        "test callers' tokens: {} (E2E_WRITER_TOKEN, E2E_READER_TOKEN, E2E_SIGNAL_TOKEN)",
        tokens.display()
    );
    println!(
        "logs: {} — Ctrl-C stops the stack",
        run_dir.join("logs").display()
    );
    tokio::signal::ctrl_c().await?;
    Box::new(platform).down().await?;
    Ok(ExitCode::SUCCESS)
}

fn write_tokens(path: &Path, platform: &dyn Platform) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let t = platform.tokens();
    std::fs::write(
        path,
        format!(
            "E2E_WRITER_TOKEN={}\nE2E_READER_TOKEN={}\nE2E_SIGNAL_TOKEN={}\n",
            t.writer, t.reader, t.signal_sender
        ),
    )?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn print_endpoints(platform: &dyn Platform) {
    let e = platform.endpoints();
    // Without the trailing slash, so `$URL/api/...` pastes into curl as is.
    let show = |u: &url::Url| u.as_str().trim_end_matches('/').to_owned();
    println!("{} stack is up:", platform.name());
    println!("  DataStorage API     {}", show(&e.data_storage_api));
    println!("  DataStorage health  {}", show(&e.data_storage_health));
    println!("  Gateway API         {}", show(&e.gateway_api));
    println!("  Gateway health      {}", show(&e.gateway_health));
}

/// The newest log file of `component` in the `e2e up` directory.
fn local_logs(root: &Path, component: Which) -> anyhow::Result<String> {
    let dir = local_up_dir(root).join("logs");
    let prefix = format!("{}-", Component::from(component));
    let newest = std::fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "no local stack logs in {} (is `e2e up` running?)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .with_context(|| format!("no {prefix}*.log in {}", dir.display()))?;
    Ok(std::fs::read_to_string(newest)?)
}

fn bench_table(files: &[PathBuf]) -> ExitCode {
    let mut results = Vec::new();
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(text) => results.extend(datastorage::testing::bench::parse(&text)),
            Err(e) => {
                eprintln!("bench-table: {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if results.is_empty() {
        eprintln!("bench-table: no bench-result lines found");
        return ExitCode::FAILURE;
    }
    println!("{}", e2e::bench_table::render(&results));
    ExitCode::SUCCESS
}

fn run_preflight(root: &Path, overlay: PathBuf) -> ExitCode {
    let overlay = if overlay.is_absolute() {
        overlay
    } else {
        root.join(overlay)
    };
    match preflight::check_overlay(root, &overlay) {
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
