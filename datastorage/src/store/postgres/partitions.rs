//! Monthly partitions of `audit_events`, created ahead of time.
//!
//! At startup and then every `partition_check_interval` (a day by default) the
//! partitions for the current month and the next [`MONTHS_AHEAD`] exist. Rows of
//! any other month land in the default partition, so an insert never fails for
//! lack of a partition.

use chrono::{Datelike, NaiveDate, Utc};
use tokio_postgres::Client;

/// Months after the current one that always have a partition.
pub const MONTHS_AHEAD: u32 = 3;

/// Advisory lock key serialising partition creation across replicas.
const PARTITION_LOCK: i64 = 0x6175_6469_745f_7061; // "audit_pa"

/// First day of the month `offset` months after the month of `date`.
pub fn month_start(date: NaiveDate, offset: u32) -> NaiveDate {
    let months = date.year() * 12 + date.month0() as i32 + offset as i32;
    NaiveDate::from_ymd_opt(months.div_euclid(12), months.rem_euclid(12) as u32 + 1, 1)
        .expect("the first of a month always exists")
}

/// Name of the partition holding the month starting at `start`.
pub fn partition_name(start: NaiveDate) -> String {
    format!("audit_events_y{:04}m{:02}", start.year(), start.month())
}

/// Makes sure the partitions from today's month to [`MONTHS_AHEAD`] later exist;
/// returns the names it created.
pub async fn ensure(client: &mut Client) -> Result<Vec<String>, tokio_postgres::Error> {
    ensure_from(client, Utc::now().date_naive()).await
}

/// [`ensure`] for the month of `today` (tests pass other dates).
pub async fn ensure_from(
    client: &mut Client,
    today: NaiveDate,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut created = Vec::new();
    for offset in 0..=MONTHS_AHEAD {
        let (from, to) = (month_start(today, offset), month_start(today, offset + 1));
        let name = partition_name(from);
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .await?;
        let exists = tx
            .query_opt("SELECT 1 FROM pg_class WHERE relname = $1", &[&name])
            .await?
            .is_some();
        if exists {
            tx.commit().await?;
            continue;
        }
        // Names and bounds come from dates we format ourselves, never from input.
        let made = tx
            .batch_execute(&format!(
                "CREATE TABLE {name} PARTITION OF audit_events \
                 FOR VALUES FROM ('{from}') TO ('{to}')"
            ))
            .await;
        match made {
            Ok(()) => {
                tx.commit().await?;
                created.push(name);
            }
            // The default partition already holds rows of that month (the check
            // did not run in time). They stay there, still readable and
            // idempotent; an operator can move them and create the partition.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION) => {
                tracing::warn!(partition = %name, error = %e,
                    "the default partition holds rows of this month; partition not created");
            }
            Err(e) => return Err(e),
        }
    }
    if !created.is_empty() {
        tracing::info!(partitions = ?created, "created audit_events partitions");
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_over_the_year() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        assert_eq!(month_start(d, 0).to_string(), "2026-11-01");
        assert_eq!(month_start(d, 2).to_string(), "2027-01-01");
        assert_eq!(month_start(d, 4).to_string(), "2027-03-01");
        assert_eq!(partition_name(month_start(d, 2)), "audit_events_y2027m01");
    }
}
