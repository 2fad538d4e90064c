//! Turning a request body into events ready to store.
//!
//! A batch is all-or-nothing: every event is checked first and one invalid event
//! rejects the whole batch with every problem of every event, so a client never
//! has to guess which part of a batch was kept.

use audit_sdk::validation::ValidationErrors;
use audit_sdk::{AuditEvent, FieldError};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// Why a batch cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// More events than `max_batch_size`.
    #[error("a batch holds at most {max} events, got {got}")]
    TooLarge { max: usize, got: usize },
    /// An empty batch is a client bug worth reporting.
    #[error("a batch must hold at least one event")]
    Empty,
    /// The body is not JSON, or not an array (the parser's words).
    #[error("body is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    /// At least one event is invalid; every problem is listed.
    #[error("{} problem(s) in the batch", .0.len())]
    Invalid(Vec<FieldError>),
}

/// Validates every event of a batch as of `now` and assigns a UUIDv7 to events
/// sent without an id.
pub fn prepare_batch(
    values: Vec<Value>,
    max_batch_size: usize,
    now: DateTime<Utc>,
) -> Result<Vec<AuditEvent>, IngestError> {
    check_count(values.len(), max_batch_size)?;
    collect(
        values
            .into_iter()
            .map(|value| AuditEvent::from_json(value, now)),
    )
}

/// [`prepare_batch`] on a batch body's JSON text, read without a `Value` tree
/// when every event is valid ([`AuditEvent::batch_from_json`]); the same
/// answer for every body.
pub fn prepare_batch_json(
    body: &[u8],
    max_batch_size: usize,
    now: DateTime<Utc>,
) -> Result<Vec<AuditEvent>, IngestError> {
    let read = AuditEvent::batch_from_json(body, now)
        .map_err(|e| IngestError::Malformed(e.to_string()))?;
    check_count(read.len(), max_batch_size)?;
    collect(read)
}

fn check_count(count: usize, max: usize) -> Result<(), IngestError> {
    match count {
        0 => Err(IngestError::Empty),
        got if got > max => Err(IngestError::TooLarge { max, got }),
        _ => Ok(()),
    }
}

/// The events, with ids assigned, or every problem of every event.
fn collect(
    read: impl IntoIterator<Item = Result<AuditEvent, ValidationErrors>>,
) -> Result<Vec<AuditEvent>, IngestError> {
    let read = read.into_iter();
    let mut events = Vec::with_capacity(read.size_hint().0);
    let mut problems = Vec::new();
    for (index, result) in read.enumerate() {
        match result {
            Ok(mut event) => {
                event.event_id.get_or_insert_with(Uuid::now_v7);
                events.push(event);
            }
            Err(errors) => problems.extend(errors.0.into_iter().map(|e| e.at(index))),
        }
    }
    if problems.is_empty() {
        Ok(events)
    } else {
        Err(IngestError::Invalid(problems))
    }
}

/// Actor type recorded for events sent by an authenticated person.
pub const USER_ACTOR_TYPE: &str = "user";

/// When a person (not a ServiceAccount) sent the events, records them as the
/// actor: what a human claims in the body must not hide who they are.
/// Workloads act on behalf of others (the gateway audits alerts), so their
/// events keep the actor they state.
pub fn attribute_actor(events: &mut [AuditEvent], caller: Option<&auth::Identity>) {
    let Some(caller) = caller.filter(|c| !c.is_service_account()) else {
        return;
    };
    for event in events {
        event.actor_type = USER_ACTOR_TYPE.to_owned();
        event.actor_id = caller.subject.clone();
    }
}

/// Validates a single event (no index in its problems).
pub fn prepare_one(value: Value, now: DateTime<Utc>) -> Result<AuditEvent, IngestError> {
    let mut event = AuditEvent::from_json(value, now).map_err(|e| IngestError::Invalid(e.0))?;
    event.event_id.get_or_insert_with(Uuid::now_v7);
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid(now: DateTime<Utc>) -> Value {
        serde_json::to_value(
            AuditEvent::builder("t.e", "c")
                .category("c")
                .action("a")
                .actor("service", "s")
                .resource("r", "i")
                .timestamp(now)
                .build(),
        )
        .unwrap()
    }

    #[test]
    fn one_invalid_event_rejects_the_batch_naming_its_index() {
        let now = Utc::now();
        let mut values: Vec<Value> = (0..5).map(|_| valid(now)).collect();
        values[3]["event_outcome"] = json!("nope");
        match prepare_batch(values, 10, now) {
            Err(IngestError::Invalid(errors)) => {
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].index, Some(3));
                assert_eq!(errors[0].field, "event_outcome");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn missing_ids_are_assigned_and_sent_ids_kept() {
        let now = Utc::now();
        let mut a = valid(now);
        a.as_object_mut().unwrap().remove("event_id");
        let b = valid(now);
        let sent = b["event_id"].as_str().unwrap().to_owned();
        let events = prepare_batch(vec![a, b], 10, now).unwrap();
        assert_eq!(events[0].event_id.unwrap().get_version_num(), 7);
        assert_eq!(events[1].event_id.unwrap().to_string(), sent);
    }

    #[test]
    fn size_bounds_are_enforced() {
        let now = Utc::now();
        assert!(matches!(
            prepare_batch(vec![], 10, now),
            Err(IngestError::Empty)
        ));
        assert!(matches!(
            prepare_batch(vec![valid(now); 3], 2, now),
            Err(IngestError::TooLarge { max: 2, got: 3 })
        ));
    }
}
