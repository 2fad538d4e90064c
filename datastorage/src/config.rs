//! Typed configuration, layered: defaults → YAML file → `DATASTORAGE_*` environment.
//!
//! Every struct denies unknown keys, so a typo in a ConfigMap stops the service at
//! startup with the key's name instead of being silently ignored.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::store::postgres::PostgresConfig;
use crate::store::sqlite::SqliteConfig;

/// Prefix of environment overrides (`DATASTORAGE_SERVER__API_PORT=9000`).
pub const ENV_PREFIX: &str = "DATASTORAGE_";
pub use audit_sdk::names::{
    API_PORT as DEFAULT_API_PORT, HEALTH_PORT as DEFAULT_HEALTH_PORT,
    METRICS_PORT as DEFAULT_METRICS_PORT,
};

/// The whole configuration of a DataStorage process.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners and shutdown timing.
    pub server: ServerConfig,
    /// Request size limits.
    pub limits: LimitsConfig,
    /// Where events are stored.
    pub store: StoreConfig,
    /// Hash chain settings.
    pub chain: ChainConfig,
    /// Logging.
    pub log: LogConfig,
    /// Who may call the API (see the `auth` crate).
    pub auth: auth::AuthConfig,
}

/// Listeners and shutdown timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address every listener binds.
    pub host: IpAddr,
    /// REST API port (0 = any free port).
    pub api_port: u16,
    /// Health port (0 = any free port).
    pub health_port: u16,
    /// Prometheus metrics port (0 = any free port).
    pub metrics_port: u16,
    /// After a stop signal, how long `/readyz` answers 503 before listeners stop
    /// accepting, so load balancers and Endpoints stop sending traffic first.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take to finish after that.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// TLS on the API port (`cert_file` and `key_file`; re-read as they rotate).
    #[serde(default)]
    pub tls: service_kit::tls::TlsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            api_port: DEFAULT_API_PORT,
            health_port: DEFAULT_HEALTH_PORT,
            metrics_port: DEFAULT_METRICS_PORT,
            shutdown_delay: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(20),
            tls: service_kit::tls::TlsConfig::default(),
        }
    }
}

/// Request size limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most events in one batch.
    pub max_batch_size: usize,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Most API requests in progress at once; past it requests are refused with
    /// 503 and `Retry-After` (`/readyz` is never refused). With the default
    /// body limit this bounds buffered request bodies to 16 x 5 MiB.
    pub max_concurrent_requests: usize,
    /// Longest an API request may take before it is answered 504.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Memory that parsed ingest bodies may hold at once, in bytes. Each body's
    /// parsed size is estimated before parsing (a JSON tree of small objects
    /// takes ~80 times its text) and reserved; a body whose estimate exceeds
    /// half of this is refused with 413, and one that finds the budget taken
    /// waits briefly, then gets 503 and `Retry-After`. With the concurrency
    /// and body limits this keeps the process inside a 256 MiB pod limit.
    pub ingest_memory_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 1000,
            max_body_bytes: 5 * 1024 * 1024,
            max_concurrent_requests: 16,
            request_timeout: Duration::from_secs(30),
            ingest_memory_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Storage backend selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded SQLite file (the default).
    #[default]
    Sqlite,
    /// PostgreSQL (production; settings under `store.postgres`).
    Postgres,
}

/// Where events are stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Which backend.
    pub backend: Backend,
    /// SQLite settings.
    pub sqlite: SqliteConfig,
    /// PostgreSQL settings (the password never comes from here; see
    /// [`PostgresConfig::password`]).
    pub postgres: PostgresConfig,
}

/// Hash chain settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// File holding an HMAC key; when set, chains use HMAC-SHA256 instead of SHA-256.
    pub hmac_key_file: Option<PathBuf>,
    /// Retired HMAC keys: never used for new events, only to verify the events
    /// they hashed (each row records the id of its key). Keep a key here after
    /// rotating `hmac_key_file` for as long as its events are kept.
    pub verify_only_key_files: Vec<PathBuf>,
    /// Rows read at a time when verifying a chain (`verify-chain`, `verify`):
    /// memory per verification is bounded by this, whatever the chain's length.
    pub verify_chunk_size: usize,
    /// A signed checkpoint of every chain head is taken this often (0s: never
    /// by time). Checkpoints whose heads did not change are not written.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// ... and as soon as this many events were stored since the last one, or
    /// as many as the last one covered chains if that is more, since a
    /// checkpoint reads and writes every head (0: never by count).
    pub checkpoint_every_events: u64,
    /// PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519`):
    /// checkpoints are signed with it. Without it they are signed with HMAC
    /// under `hmac_key_file`, and without that they are unsigned digests.
    pub checkpoint_signing_key_file: Option<PathBuf>,
    /// PEM Ed25519 public keys accepted for checkpoints besides the signing
    /// key's own: retired signing keys, or the key of the store a `verify`
    /// host checks.
    pub checkpoint_public_key_files: Vec<PathBuf>,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            hmac_key_file: None,
            verify_only_key_files: Vec::new(),
            verify_chunk_size: crate::domain::verification::DEFAULT_CHUNK_SIZE,
            checkpoint_interval: Duration::from_secs(300),
            checkpoint_every_events: 10_000,
            checkpoint_signing_key_file: None,
            checkpoint_public_key_files: Vec::new(),
        }
    }
}

pub use service_kit::logging::{LogConfig, LogFormat};

impl Config {
    /// Loads defaults, then `file` (when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        Self::figment(file).extract().map_err(Box::new)
    }

    /// The layered sources, exposed for tests and `--print-config`.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            // `file_exact` makes a missing file an error instead of an empty layer.
            figment = figment.merge(Yaml::file_exact(path));
        }
        // The PostgreSQL password variable is a secret read by the backend itself,
        // never a configuration key (so it cannot end up in print-config either).
        figment.merge(
            Env::prefixed(ENV_PREFIX)
                .ignore(&["POSTGRES_PASSWORD"])
                .split("__"),
        )
    }
}

#[cfg(test)]
// figment's Jail API fixes the closure's error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_the_documented_ports_and_embedded_store() {
        figment::Jail::expect_with(|_| {
            let c = Config::load(None).unwrap();
            assert_eq!(c.server.api_port, 8080);
            assert_eq!(c.server.health_port, 8081);
            assert_eq!(c.server.metrics_port, 9090);
            assert_eq!(c.store.sqlite.path, PathBuf::from("./data/audit.db"));
            assert_eq!(c.limits.max_batch_size, 1000);
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "server:\n  api_port: 7000\n  shutdown_delay: 250ms\nlimits:\n  max_batch_size: 10\n",
            )?;
            jail.set_env("DATASTORAGE_SERVER__API_PORT", "7001");
            let c = Config::load(Some(Path::new("c.yaml"))).unwrap();
            assert_eq!(c.server.api_port, 7001);
            assert_eq!(c.server.shutdown_delay, Duration::from_millis(250));
            assert_eq!(c.limits.max_batch_size, 10);
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "server:\n  api_prot: 7000\n")?;
            let err = Config::load(Some(Path::new("c.yaml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("api_prot"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_environment_key_is_an_error_naming_it() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("DATASTORAGE_STORE__SQLITE__PAHT", "/tmp/x.db");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("paht"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn postgres_is_selected_by_name_and_a_password_key_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "store:\n  backend: postgres\n  postgres:\n    host: db\n    pool_size: 4\n",
            )?;
            let c = Config::load(Some(Path::new("c.yaml"))).unwrap();
            assert_eq!(c.store.backend, Backend::Postgres);
            assert_eq!(
                (c.store.postgres.host.as_str(), c.store.postgres.pool_size),
                ("db", 4)
            );
            jail.create_file("p.yaml", "store:\n  postgres:\n    password: hunter2\n")?;
            let err = Config::load(Some(Path::new("p.yaml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("password"), "{err}");
            // The dedicated variable is read outside figment, so it is no config key.
            jail.set_env(crate::store::postgres::PASSWORD_ENV, "s3cret");
            assert!(Config::load(None).is_ok());
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        figment::Jail::expect_with(|_| {
            assert!(Config::load(Some(Path::new("nope.yaml"))).is_err());
            Ok(())
        });
    }
}
