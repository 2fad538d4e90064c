//! The fast way to read a batch: straight from the JSON text into typed
//! fields, without building a `serde_json::Value` tree first.
//!
//! Nearly every batch a server receives is valid. Reading one through a
//! `Value` tree allocates every key and inserts it into a B-tree, only for
//! [`AuditEvent::from_json`] to take each one out again; that was about a
//! tenth of DataStorage's CPU in the PostgreSQL ingest bench. Here the text
//! is read once into [`Sent`], converted as `from_json` converts, defaulted by the same [`Read::assemble`]
//! and checked by the same [`rule_errors`].
//!
//! What it holds at once (the typed fields of every event, then the events)
//! is less than the `Value` tree the other path builds, which is what
//! DataStorage reserves memory for before reading a body.
//!
//! It only ever answers for a batch it accepts whole. Anything else — a wrong
//! type, a missing or unknown field, a duplicate key, a broken rule, an
//! element that is not an object — sends the batch down the `Value` path, which finds every
//! problem of every event and words it as it always has. So the fast path
//! cannot change what is accepted or what a refusal says; the batch fuzzer
//! (`datastorage/tests/fuzz_batch_body.rs`) checks that both paths give the
//! same answer for every input it makes.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{nanos, rule_errors, Read};
use crate::event::{AuditEvent, EventOutcome};

/// An event's fields as sent, each as the type `from_json` decodes it to.
/// `Option` makes a field that is absent or `null` read as `None`, as
/// `from_json` does.
///
/// Unknown fields send the batch down the `Value` path instead of being
/// skipped: serde_json skips a value without checking what `from_json`'s
/// full parse checks (the UTF-8 and surrogate pairs of its strings), so a
/// skipped field could let through a body the `Value` path calls malformed.
/// With every field decoded, both paths read every byte alike. The SDK and
/// the reference's clients send only these fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    version: Option<String>,
    event_id: Option<String>,
    event_type: Option<String>,
    event_timestamp: Option<String>,
    event_category: Option<String>,
    event_action: Option<String>,
    event_outcome: Option<String>,
    actor_type: Option<String>,
    actor_id: Option<String>,
    actor_ip: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    correlation_id: Option<String>,
    parent_event_id: Option<String>,
    parent_event_date: Option<String>,
    namespace: Option<String>,
    cluster_id: Option<String>,
    /// `CLUSTER_ID_ALIAS`.
    cluster_name: Option<String>,
    severity: Option<String>,
    duration_ms: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    retention_days: Option<u32>,
    is_sensitive: Option<bool>,
    event_data: Option<Map<String, Value>>,
}

/// A [`Sent`] read only from a JSON object: a derived struct would also take
/// an array of its fields in order, which `from_json` refuses.
struct SentObject(Sent);

impl<'de> Deserialize<'de> for SentObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly;
        impl<'de> Visitor<'de> for ObjectOnly {
            type Value = SentObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an audit event object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SentObject, A::Error> {
                Sent::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(SentObject)
            }
        }
        deserializer.deserialize_map(ObjectOnly)
    }
}

impl Sent {
    /// The event, when every field converts and every rule holds as of `now`
    /// (in nanoseconds); `None` sends the batch down the `Value` path.
    fn accept(self, now: i64) -> Option<AuditEvent> {
        if let Some(date) = &self.parent_event_date {
            NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        }
        let event = Read {
            version: self.version,
            event_id: uuid(self.event_id)?,
            event_type: self.event_type?,
            event_timestamp: timestamp(self.event_timestamp?)?,
            event_action: self.event_action?,
            event_outcome: EventOutcome::parse(&self.event_outcome?)?,
            actor_type: self.actor_type,
            actor_id: self.actor_id,
            actor_ip: self.actor_ip,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            event_category: self.event_category?,
            correlation_id: self.correlation_id?,
            parent_event_id: uuid(self.parent_event_id)?,
            namespace: self.namespace,
            cluster_id: self.cluster_id.or(self.cluster_name),
            severity: self.severity,
            duration_ms: self.duration_ms,
            error_code: self.error_code,
            error_message: self.error_message,
            retention_days: self.retention_days,
            is_sensitive: self.is_sensitive,
            event_data: self.event_data,
        }
        .assemble();
        rule_errors(&event, now).is_empty().then_some(event)
    }
}

/// `Some(None)` for no id, `None` for text that is not a UUID.
fn uuid(text: Option<String>) -> Option<Option<Uuid>> {
    match text {
        None => Some(None),
        Some(text) => Uuid::parse_str(&text).ok().map(Some),
    }
}

fn timestamp(text: String) -> Option<DateTime<Utc>> {
    crate::timestamp::parse(&text).ok()
}

/// Every event of a batch body, when the body is an array of objects that all
/// read and validate as of `now`; `None` otherwise.
pub(super) fn accept_batch(body: &[u8], now: DateTime<Utc>) -> Option<Vec<AuditEvent>> {
    let sent: Vec<SentObject> = serde_json::from_slice(body).ok()?;
    let now = nanos(now);
    sent.into_iter().map(|s| s.0.accept(now)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(now: DateTime<Utc>) -> Value {
        json!({
            "event_type": "gateway.signal.received",
            "event_timestamp": crate::timestamp::format(&now),
            "event_category": "gateway",
            "event_action": "received",
            "event_outcome": "success",
            "correlation_id": "rr-1",
            "event_data": {"signal": "HighMemory", "n": [1, -0, 0.5]}
        })
    }

    /// Whether the fast path took `body`, after checking that the batch reads
    /// exactly as `from_json` reads each element.
    fn fast(body: &Value, now: DateTime<Utc>) -> bool {
        let text = serde_json::to_vec(body).unwrap();
        let slow: Vec<_> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|v| AuditEvent::from_json(v.clone(), now))
            .collect();
        assert_eq!(AuditEvent::batch_from_json(&text, now).unwrap(), slow);
        accept_batch(&text, now).is_some()
    }

    #[test]
    fn a_valid_batch_is_read_typed_with_the_same_defaults() {
        let now = Utc::now();
        let mut full = event(now);
        let obj = full.as_object_mut().unwrap();
        obj.insert("cluster_name".into(), json!("prod-eu-1"));
        obj.insert("namespace".into(), json!(""));
        obj.insert("severity".into(), Value::Null);
        obj.insert("parent_event_date".into(), json!("2026-12-01"));
        obj.insert("retention_days".into(), json!(30));
        obj.insert(
            "event_id".into(),
            json!("0190a0b0-0000-7000-8000-000000000001"),
        );
        assert!(fast(&json!([event(now), full]), now));
    }

    #[test]
    fn anything_else_is_read_through_values_with_the_same_answer() {
        let now = Utc::now();
        let with = |field: &str, value: Value| {
            let mut e = event(now);
            e.as_object_mut().unwrap().insert(field.into(), value);
            json!([event(now), e])
        };
        let cases = [
            ("wrong type", with("duration_ms", json!("slow"))),
            ("missing", {
                let mut e = event(now);
                e.as_object_mut().unwrap().remove("event_action");
                json!([e])
            }),
            ("required null", with("event_type", Value::Null)),
            ("rule broken", with("correlation_id", json!(""))),
            ("bad id", with("event_id", json!("not-a-uuid"))),
            ("bad date", with("parent_event_date", json!("yesterday"))),
            ("bad outcome", with("event_outcome", json!("maybe"))),
            ("NUL", with("error_message", json!("a\u{0}b"))),
            ("not an object", json!([event(now), "text"])),
            (
                "unknown field",
                with("extra", json!({"deep": [[{"x": 1}]]})),
            ),
            // A derived struct would take its fields in order as an array.
            ("fields as an array", {
                let mut positional = vec![Value::Null; 25];
                positional[2] = json!("t.e");
                positional[3] = json!(crate::timestamp::format(&now));
                positional[4] = json!("c");
                positional[5] = json!("a");
                positional[6] = json!("success");
                positional[12] = json!("rr-1");
                json!([positional])
            }),
        ];
        for (case, body) in cases {
            assert!(!fast(&body, now), "{case}: taken by the fast path");
        }
        // A repeated key: a Value keeps the last, serde's derive refuses.
        let text = format!(
            "[{}]",
            serde_json::to_string(&event(now)).unwrap().replacen(
                '{',
                "{\"event_type\":\"first\",",
                1
            )
        );
        assert!(accept_batch(text.as_bytes(), now).is_none());
        let read = AuditEvent::batch_from_json(text.as_bytes(), now).unwrap();
        assert_eq!(
            read[0].as_ref().unwrap().event_type,
            "gateway.signal.received"
        );
        // Not an array, or not JSON: the parser's error, as before.
        assert!(AuditEvent::batch_from_json(b"{}", now).is_err());
        assert!(AuditEvent::batch_from_json(b"[{", now).is_err());
    }
}
