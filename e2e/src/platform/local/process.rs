//! One service binary run as a child process: started with a config file, its
//! output captured per start, stopped with SIGTERM or SIGKILL, and waited on by
//! its own health endpoints (never by sleeping a fixed time).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How long a service may take to exit after SIGTERM (its drain time plus the
/// audit store's close, with room to spare).
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often health endpoints are polled while waiting.
const POLL: Duration = Duration::from_millis(50);

/// A service binary, its configuration, and the current child (if running).
#[derive(Debug)]
pub struct ServiceProcess {
    name: &'static str,
    binary: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    starts: usize,
    child: Option<Child>,
}

impl ServiceProcess {
    /// A service that is not running yet.
    pub fn new(name: &'static str, binary: PathBuf, config: PathBuf, log_dir: PathBuf) -> Self {
        Self {
            name,
            binary,
            config,
            env: Vec::new(),
            log_dir,
            starts: 0,
            child: None,
        }
    }

    /// Environment overrides for the next start (replacing earlier ones).
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// The log file of the current (or last) start.
    pub fn log_file(&self) -> PathBuf {
        self.log_dir
            .join(format!("{}-{}.log", self.name, self.starts.max(1)))
    }

    /// Whether a child is running (not yet reaped).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the binary with `serve --config <file>`, output into a fresh log file.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.name);
        }
        self.starts += 1;
        let log_path = self.log_file();
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Never outlive the suite, even when it panics.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls `url` until it answers 200; fails early when the process exits.
    pub async fn wait_for(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(resp) = client.get(url).timeout(POLL * 20).send().await {
                if resp.status() == 200 {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "{} exited ({status}) before {url} answered 200; its log:\n{}",
                        self.name,
                        tail(&self.log_file(), 30)
                    );
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not answer 200 on {url} within {timeout:?}; its log:\n{}",
                    self.name,
                    tail(&self.log_file(), 30)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends `signal` and waits until the process has exited.
    pub async fn signal_and_wait(&mut self, signal: Signal) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
            // ESRCH: it exited on its own in the meantime, which is what we want.
            if let Err(e) = kill(pid, signal) {
                if e != nix::errno::Errno::ESRCH {
                    return Err(e).with_context(|| format!("sending {signal} to {}", self.name));
                }
            }
        }
        let status = tokio::time::timeout(EXIT_TIMEOUT, child.wait())
            .await
            .with_context(|| {
                format!(
                    "{} still running {EXIT_TIMEOUT:?} after {signal}",
                    self.name
                )
            })??;
        tracing::debug!(service = self.name, %status, "exited");
        if signal == Signal::SIGTERM && !status.success() {
            bail!(
                "{} exited with {status} after SIGTERM; its log:\n{}",
                self.name,
                tail(&self.log_file(), 30)
            );
        }
        Ok(())
    }
}

/// The last `lines` lines of a file (for error messages).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
