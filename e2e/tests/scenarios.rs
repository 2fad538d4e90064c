//! The end-to-end scenario suite (a custom test harness: the scenarios share
//! one stack per platform and print one timing table).
//!
//! `E2E_PLATFORM=local` (default) runs the real binaries as processes, on
//! SQLite and on a throwaway PostgreSQL; `E2E_PLATFORM=kind` runs them in a
//! Kind cluster. A free argument filters scenarios by name, like libtest
//! filters (`cargo test -p e2e --test scenarios -- outage`); a filter that
//! matches nothing runs nothing, so `cargo test --workspace some_unit_test`
//! does not start the stack.

use std::process::ExitCode;

use e2e::scenarios::select;
use e2e::suite::{self, PlatformChoice};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let scenarios = select(filter.as_deref());
    if args.iter().any(|a| a == "--list") {
        for s in &scenarios {
            println!("{}: test", s.name());
        }
        return ExitCode::SUCCESS;
    }
    if scenarios.is_empty() {
        println!("e2e scenarios: none match {filter:?}");
        return ExitCode::SUCCESS;
    }
    let platform = match PlatformChoice::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let root = e2e::preflight::repo_root();
    let run_dir = e2e::platform::run_dir(&root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let summary = runtime.block_on(suite::run(platform, &scenarios, &run_dir));
    println!("\n{summary}\nrun directory: {}", run_dir.display());
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
