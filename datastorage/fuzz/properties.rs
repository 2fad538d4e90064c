//! The properties every batch-body input must hold, shared by the stable
//! mutation fuzzer (`datastorage/tests/fuzz_batch_body.rs`, in `make test`)
//! and the coverage-guided cargo-fuzz target (`fuzz_targets/batch_body.rs`,
//! run by `.ci/fuzz.sh` where a nightly toolchain is installed), so both
//! look for the same breakage. Included by path: it is neither a test
//! target nor part of the library.

use audit_sdk::AuditEvent;
use chrono::{DateTime, Utc};
use datastorage::api::json_cost;
use datastorage::domain::canonical::canonical_json;
use datastorage::domain::ingest::{prepare_batch_json, IngestError};
use serde_json::Value;

/// The clock the corpus was written against (events must be within 7 days).
pub const NOW: &str = "2026-12-01T00:00:00Z";
/// A small batch limit, so "too many events" is reachable.
pub const MAX_BATCH: usize = 50;
/// The contract's fields (what an outcome is told apart by).
const FIELDS: &[&str] = &[
    "",
    "version",
    "event_id",
    "event_type",
    "event_timestamp",
    "event_category",
    "event_action",
    "event_outcome",
    "actor_type",
    "actor_id",
    "actor_ip",
    "resource_type",
    "resource_id",
    "correlation_id",
    "parent_event_id",
    "namespace",
    "cluster_id",
    "severity",
    "duration_ms",
    "error_code",
    "error_message",
    "retention_days",
    "is_sensitive",
    "event_data",
];

/// What an input came to; a new one is worth keeping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    Malformed,
    NotABatch,
    Empty,
    TooLarge,
    Invalid(Vec<String>),
    Accepted(usize),
}

/// The properties every input must hold; panics on a violation.
pub fn check(body: &[u8], now: DateTime<Utc>) -> Outcome {
    let cost = json_cost::measure(body, MAX_BATCH);
    let parsed = serde_json::from_slice::<Value>(body);
    assert_eq!(
        cost.is_ok(),
        parsed.is_ok(),
        "cost pass and parser disagree: {:?} vs {:?}",
        cost.err(),
        parsed.err()
    );
    let fast = AuditEvent::batch_from_json(body, now);
    let Ok(cost) = cost else {
        assert!(fast.is_err(), "malformed JSON read as a batch");
        return Outcome::Malformed;
    };
    let Some(items) = cost.items else {
        assert!(
            fast.is_err(),
            "a document that is not an array read as a batch"
        );
        return Outcome::NotABatch;
    };
    if items > MAX_BATCH {
        return Outcome::TooLarge;
    }
    let values: Vec<Value> = serde_json::from_slice(body).expect("parsed above");
    assert_eq!(values.len(), items);
    // The typed fast path answers exactly as the `Value` path, event by
    // event: the same events, or the same problems in the same words.
    let slow: Vec<_> = values
        .iter()
        .map(|value| AuditEvent::from_json(value.clone(), now))
        .collect();
    assert_eq!(
        fast.expect("an array reads as a batch"),
        slow,
        "typed and Value reads differ"
    );
    match prepare_batch_json(body, MAX_BATCH, now) {
        Err(IngestError::Malformed(e)) => panic!("an array of {items} read as malformed: {e}"),
        Err(IngestError::Empty) => Outcome::Empty,
        Err(IngestError::TooLarge { .. }) => panic!("{items} items are within the limit"),
        Err(IngestError::Invalid(errors)) => {
            assert!(!errors.is_empty());
            let mut fields: Vec<String> = errors
                .iter()
                .map(|e| {
                    let index = e.index.expect("batch problems name their index");
                    assert!(index < items, "index {index} of {items}");
                    let field = e.field.split(['.', '[']).next().unwrap_or("");
                    // Unknown fields are named by the input: one kind.
                    if FIELDS.contains(&field) {
                        field
                    } else {
                        "(other)"
                    }
                    .to_owned()
                })
                .collect();
            fields.sort();
            fields.dedup();
            // Coarse on purpose: the first two fields, so the kept corpus
            // stays small (one input per kind of refusal, not per mix).
            fields.truncate(2);
            Outcome::Invalid(fields)
        }
        Ok(events) => {
            for event in &events {
                let ours = canonical_json(event);
                let reference = serde_json_canonicalizer::to_vec(event).expect("serialises");
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&reference),
                    "canonical JSON differs from the JCS reference"
                );
                let stored = serde_json::to_value(event).expect("serialises");
                let back = AuditEvent::from_json(stored, now)
                    .unwrap_or_else(|e| panic!("an accepted event read back is refused: {e}"));
                assert_eq!(canonical_json(&back), ours, "read back hashes differently");
            }
            Outcome::Accepted(events.len().min(3))
        }
    }
}
