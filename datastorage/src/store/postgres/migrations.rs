//! Versioned schema migrations, tracked in `schema_migrations`.
//!
//! Several replicas (and the `datastorage migrate` Job) may start at once, so the
//! whole run holds a session advisory lock: one applies, the others wait and then
//! find nothing left to do. Each migration commits together with its version row.

use tokio_postgres::Client;

/// Migrations in order; migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("0001_init.sql"),
    include_str!("0002_legal_hold_history.sql"),
    include_str!("0003_event_ids.sql"),
    include_str!("0004_chain_heads_guard.sql"),
    include_str!("0005_hash_key_id.sql"),
    include_str!("0006_checkpoints.sql"),
    include_str!("0007_chain_heads_hot.sql"),
    include_str!("0008_checkpoint_heads_lz4.sql"),
];

/// Advisory lock key serialising migration runs (arbitrary, fixed).
const MIGRATION_LOCK: i64 = 0x6175_6469_745f_6d69; // "audit_mi"

/// Applies every pending migration; returns how many ran.
pub async fn migrate(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = migrate_locked(client).await;
    // Unlock even after a failure; a broken session releases it anyway.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn migrate_locked(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let current: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let current = current as usize;
    if current > MIGRATIONS.len() {
        tracing::warn!(
            database = current,
            known = MIGRATIONS.len(),
            "database schema is newer than this binary; run a newer datastorage"
        );
        return Ok(0);
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = (i + 1) as i32;
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    Ok(MIGRATIONS.len() - current)
}

/// The schema version this binary brings the database to.
pub fn latest_version() -> usize {
    MIGRATIONS.len()
}
