//! A throwaway PostgreSQL cluster: `initdb` + `pg_ctl` in a temporary directory,
//! listening on a free loopback port, removed when dropped.
//!
//! The server binaries are looked up on `PATH`, then in `pg_config --bindir`, then
//! under `/usr/lib/postgresql/*/bin` (newest version first). PostgreSQL refuses to
//! run as root, so when the tests run as root every server command runs as the
//! `postgres` user (through `runuser`) on a directory chowned to it.
//!
//! [`PgCluster::start_or_skip`] returns `None` with a printed reason when no
//! binaries exist, except when the `CI` environment variable is set: CI must run
//! these tests, so there a missing PostgreSQL is a failure.

use super::ports::free_port;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::domain::chain::ChainHasher;
use crate::store::postgres::{self, PostgresConfig, PostgresStore};
use crate::store::StoreError;

/// Settings for a fast, disposable cluster: durability is irrelevant here.
pub const TEST_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "200"),
];

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    run_as_postgres: bool,
    settings: Vec<(String, String)>,
}

/// Where `initdb` and `pg_ctl` live, if anywhere.
pub fn find_bindir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Some(dir);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_both(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl PgCluster {
    /// Starts a cluster with [`TEST_SETTINGS`], or explains why it cannot.
    pub fn start() -> Result<Self, String> {
        Self::start_with(TEST_SETTINGS)
    }

    /// Starts a cluster with these `postgresql.conf` settings.
    pub fn start_with(settings: &[(&str, &str)]) -> Result<Self, String> {
        let bindir = find_bindir().ok_or_else(|| {
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, via \
             `pg_config --bindir` or under /usr/lib/postgresql/*/bin"
                .to_owned()
        })?;
        let dir = tempfile::Builder::new()
            .prefix("pgtest")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let run_as_postgres = running_as_root();
        if run_as_postgres {
            let uid_gid = Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(|s| s.trim().parse::<u32>().ok())
                .ok_or("running as root, but there is no `postgres` user to run the server")?;
            std::os::unix::fs::chown(dir.path(), Some(uid_gid), None)
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let mut cluster = Self {
            bindir,
            dir,
            port: 0,
            run_as_postgres,
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().ok_or("non-UTF-8 temp dir")?,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        // A free port can be taken by someone else before the server binds it.
        let mut last = String::new();
        for _ in 0..3 {
            cluster.port = free_port();
            match cluster.start_server() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// [`PgCluster::start`], or `None` after printing why the caller should skip.
    /// Panics instead when `CI` is set: CI must run the PostgreSQL tests.
    pub fn start_or_skip() -> Option<Self> {
        match Self::start() {
            Ok(c) => Some(c),
            Err(reason) if std::env::var_os("CI").is_some() => {
                panic!("CI is set, so PostgreSQL tests must run, but: {reason}")
            }
            Err(reason) => {
                eprintln!("skipping PostgreSQL test: {reason}");
                None
            }
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Runs a server binary (as `postgres` when we are root).
    fn run(&self, binary: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bindir.join(binary);
        let mut cmd = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("running {}: {e}", program.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        Err(format!(
            "{binary} {args:?} failed ({}): {}{}\nserver log:\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        ))
    }

    /// Starts the server and waits (`pg_ctl -w`) until it accepts connections.
    fn start_server(&self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        for (k, v) in &self.settings {
            options.push_str(&format!(" -c {k}={v}"));
        }
        let data = self.data_dir();
        let log = self.log_file();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-l",
                log.to_str().unwrap_or_default(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server (fast shutdown: open connections are terminated).
    pub fn stop(&self) -> Result<(), String> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }

    /// Starts the server again on the same port after [`PgCluster::stop`].
    pub fn restart(&self) -> Result<(), String> {
        self.start_server()
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Backend settings connecting as the superuser to `dbname`.
    pub fn config(&self, dbname: &str) -> PostgresConfig {
        PostgresConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            dbname: dbname.into(),
            ..PostgresConfig::default()
        }
    }

    /// Backend settings for the default `postgres` database.
    pub fn default_config(&self) -> PostgresConfig {
        self.config("postgres")
    }

    /// A superuser connection to `postgres` (its driver task is spawned).
    pub async fn superuser(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        connect(&self.default_config()).await
    }

    /// The role split as the shipped manifests run it, in database `dbname`
    /// whose roles `owner` and `serving` exist: migrations as `owner`
    /// (granting `serving` what it may do), then a store opened as `serving`
    /// (no migrations, no partition management). Returns the store and the
    /// serving role's configuration, to connect with it directly.
    pub async fn open_as_serving_role(
        &self,
        dbname: &str,
        owner: &str,
        serving: &str,
    ) -> Result<(PostgresStore, PostgresConfig), StoreError> {
        let mut owner_config = self.config(dbname);
        owner_config.user = owner.into();
        owner_config.serving_role = Some(serving.into());
        postgres::migrate(&owner_config).await?;
        let mut serving_config = self.config(dbname);
        serving_config.user = serving.into();
        serving_config.migrate_on_start = false;
        serving_config.manage_partitions = false;
        let store = PostgresStore::open(&serving_config, ChainHasher::sha256()).await?;
        Ok((store, serving_config))
    }
}

/// A plain client connected as `config` says (its connection driven by a task).
pub async fn connect(
    config: &PostgresConfig,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config
        .pg_config()
        .expect("no password file to read")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        // Immediate: nothing here needs a clean shutdown; the directory goes next.
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}
