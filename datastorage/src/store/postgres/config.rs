//! Settings of the PostgreSQL backend.
//!
//! The password is deliberately not a field: it comes from `password_file` or the
//! `DATASTORAGE_POSTGRES_PASSWORD` environment variable (read outside figment), so
//! it can never be written into a ConfigMap's YAML.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Environment variable holding the password when `password_file` is not set.
pub const PASSWORD_ENV: &str = "DATASTORAGE_POSTGRES_PASSWORD";

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Server host name or address (or a Unix socket directory).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Role to connect as.
    pub user: String,
    /// Database name.
    pub dbname: String,
    /// File holding the password (trailing newline ignored); when absent,
    /// [`PASSWORD_ENV`] is read; when both are absent, no password is sent.
    pub password_file: Option<PathBuf>,
    /// Most pooled connections.
    pub pool_size: usize,
    /// How long opening one connection may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a request waits for a free pooled connection.
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// Longest a single statement may run (`statement_timeout`).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// How often the partition maintenance task checks partitions ahead exist.
    #[serde(with = "humantime_serde")]
    pub partition_check_interval: Duration,
    /// Apply pending migrations at startup (otherwise `datastorage migrate` must).
    pub migrate_on_start: bool,
    /// How long startup (and `datastorage migrate`) keeps retrying while the
    /// server is unreachable, so a pod started before PostgreSQL waits instead of
    /// crash-looping; `0s` fails at the first refusal.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// Role the serving pods connect as. When set, `datastorage migrate` (run as
    /// the schema owner) grants it the serving privileges after migrating (see
    /// `store::postgres::roles`): read, append, move chain heads, legal-hold
    /// bookkeeping; no TRUNCATE, ALTER, DROP or DELETE of events.
    pub serving_role: Option<String>,
    /// Create the partitions ahead from this process (at startup and every
    /// `partition_check_interval`). Off for pods connecting as the serving role,
    /// which may not create tables: then `datastorage migrate` (a Job, or a
    /// CronJob at least monthly) creates them, and the default partition catches
    /// rows of any month without one.
    pub manage_partitions: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            host: audit_sdk::names::POSTGRES_SERVICE.to_owned(),
            port: 5432,
            user: "datastorage".to_owned(),
            dbname: "audit".to_owned(),
            password_file: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(2),
            wait_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(30),
            partition_check_interval: Duration::from_secs(24 * 60 * 60),
            migrate_on_start: true,
            startup_timeout: Duration::from_secs(120),
            serving_role: None,
            manage_partitions: true,
        }
    }
}

impl PostgresConfig {
    /// The password from `password_file`, else [`PASSWORD_ENV`].
    pub fn password(&self) -> std::io::Result<Option<String>> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("password_file {}: {e}", path.display()))
            })?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
        }
        Ok(std::env::var(PASSWORD_ENV).ok())
    }

    /// tokio-postgres settings (with the password resolved).
    pub fn pg_config(&self) -> std::io::Result<tokio_postgres::Config> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("datastorage")
            .connect_timeout(self.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .options(format!(
                "-c statement_timeout={}",
                self.statement_timeout.as_millis()
            ));
        if let Some(password) = self.password()? {
            pg.password(password);
        }
        Ok(pg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_wins_and_its_trailing_newline_is_dropped() {
        let dir = std::env::temp_dir().join(format!("pgpw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let config = PostgresConfig {
            password_file: Some(file),
            ..PostgresConfig::default()
        };
        assert_eq!(config.password().unwrap().as_deref(), Some("s3cret"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_password_file_is_an_error_naming_it() {
        let config = PostgresConfig {
            password_file: Some("/nonexistent/pw".into()),
            ..PostgresConfig::default()
        };
        let err = config.password().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/pw"), "{err}");
    }
}
