//! The serving role: what the DataStorage pods may do in the database.
//!
//! Migrations and partition creation run as the owner of the schema (the
//! `datastorage migrate` Job); the pods connect as a role that may only read,
//! append, move chain heads forward and change the legal-hold bookkeeping. It
//! owns nothing, so it cannot TRUNCATE, ALTER (disable triggers, detach
//! partitions) or DROP, and its DELETE is limited to `legal_holds` (releasing a
//! hold). Someone holding the pods' password can therefore not rewrite chains
//! or hide deletions with triggers off.

use tokio_postgres::Client;

/// The statements granting `role` the serving privileges (idempotent: GRANT of
/// a held privilege is a no-op). Privileges on the partitioned `audit_events`
/// cover every partition reached through it, also those created later.
pub fn serving_grants(role: &str) -> String {
    let role = quote_ident(role);
    format!(
        "GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT ON schema_migrations TO {role};
         GRANT SELECT, INSERT ON audit_events, audit_event_ids, legal_hold_history TO {role};
         GRANT UPDATE (legal_hold, legal_hold_reason, legal_hold_placed_by, legal_hold_placed_at)
             ON audit_events TO {role};
         GRANT SELECT, INSERT, UPDATE (chain_seq, event_hash) ON audit_chain_heads TO {role};
         GRANT SELECT, INSERT, DELETE ON legal_holds TO {role};
         GRANT SELECT, INSERT ON audit_checkpoints TO {role};
         GRANT USAGE ON SEQUENCE legal_hold_history_id_seq TO {role};"
    )
}

/// Grants `role` the serving privileges (run by the owner after migrating).
pub async fn grant_serving(client: &Client, role: &str) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(&serving_grants(role)).await?;
    tracing::info!(role, "granted the serving privileges");
    Ok(())
}

/// A role name as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_quoted_identifiers() {
        assert_eq!(quote_ident("audit_app"), "\"audit_app\"");
        assert_eq!(quote_ident("a\"; DROP"), "\"a\"\"; DROP\"");
    }
}
