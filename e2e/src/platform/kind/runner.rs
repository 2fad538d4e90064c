//! Running the plan's commands with their output captured.
//!
//! Every command's full output goes to `commands.log` in the artefact
//! directory (a `make images` log is thousands of lines; the terminal shows a
//! spinner instead), and a failure's error carries the command line, the exit
//! status and the tail of its stderr, so the first screen already says what
//! broke. Behind a trait so the plan and the diagnostics are tested without
//! Docker, kind or a cluster.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use async_trait::async_trait;

use super::plan::Cmd;
use crate::progress::seconds;

/// Lines of stderr quoted in a failure's error.
const STDERR_TAIL_LINES: usize = 20;

/// Runs commands; returns stdout, or an error when the command cannot start,
/// exits non-zero or exceeds its timeout.
#[async_trait]
pub trait Runner: Send + Sync + fmt::Debug {
    async fn run(&self, cmd: &Cmd) -> anyhow::Result<String>;
}

/// Runs commands as child processes and appends their output to a log file.
#[derive(Debug)]
pub struct ProcessRunner {
    log: Option<PathBuf>,
    // One writer at a time, so concurrent commands' sections do not interleave.
    lock: tokio::sync::Mutex<()>,
}

impl ProcessRunner {
    /// A runner logging to `log` (created on first use; its directory must exist).
    pub fn new(log: impl Into<PathBuf>) -> Self {
        Self {
            log: Some(log.into()),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// A runner for one-off commands outside a run (no artefact directory):
    /// output is only quoted in errors.
    pub fn unlogged() -> Self {
        Self {
            log: None,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Where the command output goes.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    fn see_log(&self) -> String {
        match &self.log {
            Some(log) => format!(" (full output in {})", log.display()),
            None => String::new(),
        }
    }

    async fn append(&self, cmd: &Cmd, outcome: &str, stdout: &[u8], stderr: &[u8]) {
        let Some(log) = &self.log else {
            return;
        };
        let _guard = self.lock.lock().await;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| {
                writeln!(f, "$ {cmd}\n# {outcome}")?;
                if !cmd.quiet && !stdout.is_empty() {
                    f.write_all(stdout)?;
                    writeln!(f)?;
                }
                if !stderr.is_empty() {
                    writeln!(f, "# stderr:")?;
                    f.write_all(stderr)?;
                    writeln!(f)?;
                }
                Ok(())
            });
        if let Err(e) = written {
            eprintln!("warning: cannot write {}: {e}", log.display());
        }
    }
}

#[async_trait]
impl Runner for ProcessRunner {
    async fn run(&self, cmd: &Cmd) -> anyhow::Result<String> {
        let started = Instant::now();
        let mut command = tokio::process::Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out (dropped) command must not outlive the run.
            .kill_on_drop(true);
        if let Some(dir) = &cmd.dir {
            command.current_dir(dir);
        }
        let child = command.spawn().map_err(|e| {
            anyhow::anyhow!("cannot start `{cmd}`: {e} (is `{}` on PATH?)", cmd.program)
        })?;
        let output = match cmd.timeout {
            Some(limit) => match tokio::time::timeout(limit, child.wait_with_output()).await {
                Ok(output) => output?,
                Err(_) => {
                    self.append(cmd, &format!("killed after {}", seconds(limit)), b"", b"")
                        .await;
                    anyhow::bail!(
                        "`{cmd}` did not finish within {} (killed){}",
                        seconds(limit),
                        self.see_log()
                    );
                }
            },
            None => child.wait_with_output().await?,
        };
        let outcome = format!("{} after {}", output.status, seconds(started.elapsed()));
        self.append(cmd, &outcome, &output.stdout, &output.stderr)
            .await;
        if !output.status.success() {
            anyhow::bail!(
                "`{cmd}` failed ({}):\n{}{}",
                output.status,
                tail(&String::from_utf8_lossy(&output.stderr), STDERR_TAIL_LINES),
                self.see_log()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn output_is_captured_and_a_failure_quotes_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let runner = ProcessRunner::new(dir.path().join("commands.log"));
        let out = runner
            .run(&Cmd::new("sh", ["-c", "echo hello"]))
            .await
            .unwrap();
        assert_eq!(out, "hello\n");
        let err = runner
            .run(&Cmd::new("sh", ["-c", "echo boom >&2; exit 3"]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exit status: 3") && err.contains("boom"),
            "{err}"
        );
        let log = std::fs::read_to_string(runner.log_path().unwrap()).unwrap();
        assert!(
            log.contains("$ sh -c 'echo hello'") && log.contains("hello"),
            "{log}"
        );
        assert!(log.contains("boom"), "{log}");
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let runner = ProcessRunner::new(dir.path().join("commands.log"));
        let mut cmd = Cmd::new("sleep", ["30"]);
        cmd.timeout = Some(Duration::from_millis(50));
        let err = runner.run(&cmd).await.unwrap_err().to_string();
        assert!(err.contains("did not finish within"), "{err}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
