//! Progress output for long steps: an indicatif spinner with the elapsed time on
//! a terminal, plain start/finish lines otherwise (CI logs stay readable).

use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Runs `work` as one named step, showing progress while it runs and one line
/// with the outcome and its duration when it ends.
pub async fn step<T, F>(label: &str, work: F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| spinner(label));
    if spinner.is_none() {
        eprintln!("… {label}");
    }
    let result = work.await;
    let line = match &result {
        Ok(_) => format!("✓ {label} ({})", seconds(started.elapsed())),
        Err(e) => format!("✗ {label} ({}): {e:#}", seconds(started.elapsed())),
    };
    match spinner {
        Some(bar) => bar.finish_with_message(line),
        None => eprintln!("{line}"),
    }
    result
}

fn spinner(label: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "·"]),
    );
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `12.3s` — the one format durations are shown in.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
