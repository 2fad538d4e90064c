//! The configuration files of a local stack, generated from the services' own
//! `Config` types (so a renamed key breaks the build here, not the run).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use crate::platform::Tokens;

/// Loopback ports of one service.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// REST (and gRPC) API.
    pub api: u16,
    /// `/healthz`, `/readyz`.
    pub health: u16,
    /// `/metrics`.
    pub metrics: u16,
}

impl Ports {
    /// Three ports nobody in this process has been handed before.
    pub fn free() -> Self {
        use datastorage::testing::ports::free_port;
        Self {
            api: free_port(),
            health: free_port(),
            metrics: free_port(),
        }
    }
}

/// Subjects of the test callers, as the services record and log them.
pub const GATEWAY_SUBJECT: &str = "system:serviceaccount:kubernaut-system:gateway";
const WRITER_SUBJECT: &str = "system:serviceaccount:kubernaut-system:e2e-writer";
const READER_SUBJECT: &str = "system:serviceaccount:kubernaut-system:e2e-reader";
const SENDER_SUBJECT: &str = "system:serviceaccount:kubernaut-system:e2e-signal-sender";

/// A token nobody can guess (two UUIDv7s: 148 random bits).
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::now_v7().simple(),
        uuid::Uuid::now_v7().simple()
    )
}

/// Fresh tokens for a run, plus the Gateway's own token for DataStorage.
pub fn new_tokens() -> (Tokens, String) {
    (
        Tokens {
            writer: new_token(),
            reader: new_token(),
            signal_sender: new_token(),
        },
        new_token(),
    )
}

fn write_yaml(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_yaml::to_string(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Where DataStorage keeps its events.
#[derive(Debug, Clone)]
pub enum Store {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server (settings from the throwaway cluster).
    Postgres(datastorage::store::postgres::PostgresConfig),
}

/// Writes DataStorage's config and tokens file under `dir`; returns the config path.
pub fn write_data_storage(
    dir: &Path,
    ports: Ports,
    store: &Store,
    tokens: &Tokens,
    gateway_token: &str,
) -> anyhow::Result<PathBuf> {
    let tokens_file = dir.join("datastorage-tokens.yaml");
    write_secret(
        &tokens_file,
        &serde_yaml::to_string(&json!({
            gateway_token: {"subject": GATEWAY_SUBJECT, "verbs": ["create"]},
            &tokens.writer: {"subject": WRITER_SUBJECT, "verbs": ["create"]},
            &tokens.reader: {"subject": READER_SUBJECT, "verbs": ["list", "get"]},
        }))?,
    )?;
    let mut config = datastorage::config::Config::default();
    config.server.host = [127, 0, 0, 1].into();
    (
        config.server.api_port,
        config.server.health_port,
        config.server.metrics_port,
    ) = (ports.api, ports.health, ports.metrics);
    config.server.shutdown_delay = Duration::ZERO;
    config.log.format = service_kit::logging::LogFormat::Json;
    config.auth.mode = auth::AuthMode::Static;
    config.auth.tokens_file = Some(tokens_file);
    match store {
        Store::Sqlite(path) => {
            config.store.backend = datastorage::config::Backend::Sqlite;
            config.store.sqlite.path = path.clone();
        }
        Store::Postgres(pg) => {
            config.store.backend = datastorage::config::Backend::Postgres;
            config.store.postgres = pg.clone();
            // Fail fast while PostgreSQL is down so writes answer 503 promptly.
            config.store.postgres.connect_timeout = Duration::from_secs(1);
            config.store.postgres.wait_timeout = Duration::from_secs(1);
        }
    }
    let path = dir.join("datastorage.yaml");
    write_yaml(&path, &config)?;
    Ok(path)
}

/// Writes the Gateway's config, tokens file and DataStorage token under `dir`;
/// returns the config path.
pub fn write_gateway(
    dir: &Path,
    ports: Ports,
    data_storage_url: &str,
    tokens: &Tokens,
    gateway_token: &str,
) -> anyhow::Result<PathBuf> {
    let tokens_file = dir.join("gateway-tokens.yaml");
    write_secret(
        &tokens_file,
        &serde_yaml::to_string(&json!({
            &tokens.signal_sender: {"subject": SENDER_SUBJECT, "verbs": ["create"]},
        }))?,
    )?;
    let token_file = dir.join("gateway-datastorage-token");
    write_secret(&token_file, gateway_token)?;
    let spool_dir = dir.join("gateway-spool");
    std::fs::create_dir_all(&spool_dir)?;

    let mut config = gateway::config::Config::default();
    config.server.host = [127, 0, 0, 1].into();
    (
        config.server.api_port,
        config.server.health_port,
        config.server.metrics_port,
    ) = (ports.api, ports.health, ports.metrics);
    config.server.shutdown_delay = Duration::ZERO;
    config.remediation.backend = gateway::config::BackendKind::Memory;
    config.log.format = service_kit::logging::LogFormat::Json;
    config.auth.mode = auth::AuthMode::Static;
    config.auth.tokens_file = Some(tokens_file);
    config.audit.data_storage_url = data_storage_url.to_owned();
    config.audit.token_file = Some(token_file);
    config.audit.spool_dir = Some(spool_dir);
    // Retries stay quick so a restored DataStorage is noticed within a second.
    config.audit.retry_max_delay = Duration::from_secs(1);
    config.audit.probe_interval = Duration::from_millis(500);
    let path = dir.join("gateway.yaml");
    write_yaml(&path, &config)?;
    Ok(path)
}
