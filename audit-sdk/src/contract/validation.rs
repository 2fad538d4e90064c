//! The rules of the event contract, reporting every problem at once.
//!
//! Three entry points share one rule set:
//! - [`AuditEvent::validate`] checks a typed event (what the SDK does before
//!   enqueueing);
//! - [`AuditEvent::from_json`] turns untrusted JSON into an event (what the server
//!   does), reporting missing fields, wrong types and broken rules together, so a
//!   client fixes a bad event in one round trip;
//! - [`AuditEvent::batch_from_json`] reads a whole batch body, typed when every
//!   event is valid and through `from_json` otherwise (module `sent`).
//!
//! The server reads bodies as leniently as the reference platform's DataStorage
//! does, so its clients work unchanged: fields it does not know are ignored,
//! `actor_*`/`resource_*` may be left out (they default as the reference's do),
//! optional texts may be `""` (stored as sent: the reference Gateway sends
//! `namespace: ""` for cluster-scoped targets), `cluster_name` is read as
//! `cluster_id`, and `parent_event_date` is accepted (checked, not stored: one
//! `event_id` names one event whatever its date). Everything that could wedge or
//! corrupt the store (NUL, sizes, depth, the timestamp window) stays refused.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{AuditEvent, EventOutcome};
use crate::limits::*;
use crate::problem::FieldError;

mod sent;

/// Every problem found in one event (or one batch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid audit event: {}", summary(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `actor_type` recorded when a request leaves it out (the reference's default).
pub const DEFAULT_ACTOR_TYPE: &str = "service";

/// `actor_id` recorded when a request leaves it out: `{event_category}-service`,
/// as the reference derives it.
pub fn default_actor_id(event_category: &str) -> String {
    format!("{event_category}-service")
}

/// The reference's name of `cluster_id`, read when `cluster_id` is absent.
const CLUSTER_ID_ALIAS: &str = "cluster_name";

impl AuditEvent {
    /// Checks the event against the contract as of now.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        self.validate_at_nanos(crate::contract::clock::now_nanos())
    }

    /// Checks the event against the contract as of `now` (the timestamp window
    /// depends on it).
    pub fn validate_at(&self, now: DateTime<Utc>) -> Result<(), ValidationErrors> {
        self.validate_at_nanos(nanos(now))
    }

    fn validate_at_nanos(&self, now: i64) -> Result<(), ValidationErrors> {
        let errors = rule_errors(self, now);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }

    /// Parses untrusted JSON into an event, checking every rule as of `now`.
    ///
    /// All problems are reported together; none of them stops the others from
    /// being found.
    pub fn from_json(value: Value, now: DateTime<Utc>) -> Result<AuditEvent, ValidationErrors> {
        let Value::Object(map) = value else {
            return Err(ValidationErrors(vec![FieldError::new(
                "",
                format!(
                    "an audit event must be a JSON object, got {}",
                    kind_of(&value)
                ),
            )]));
        };
        let mut f = Fields {
            map,
            errors: Vec::new(),
            failed: BTreeSet::new(),
        };
        let event_category: String = f.required("event_category").unwrap_or_default();
        let correlation_id: String = f.required("correlation_id").unwrap_or_default();
        let cluster_id = match f.optional("cluster_id") {
            Some(id) => Some(id),
            None => f.optional(CLUSTER_ID_ALIAS),
        };
        f.optional_date("parent_event_date");

        let event = Read {
            version: f.optional("version"),
            event_id: f.optional_uuid("event_id"),
            event_type: f.required("event_type").unwrap_or_default(),
            event_timestamp: f.required_timestamp("event_timestamp"),
            event_action: f.required("event_action").unwrap_or_default(),
            event_outcome: f.required_outcome("event_outcome"),
            actor_type: f.optional("actor_type"),
            actor_id: f.optional("actor_id"),
            actor_ip: f.optional("actor_ip"),
            resource_type: f.optional("resource_type"),
            resource_id: f.optional("resource_id"),
            event_category,
            correlation_id,
            parent_event_id: f.optional_uuid("parent_event_id"),
            namespace: f.optional("namespace"),
            cluster_id,
            severity: f.optional("severity"),
            duration_ms: f.optional("duration_ms"),
            error_code: f.optional("error_code"),
            error_message: f.optional("error_message"),
            retention_days: f.optional("retention_days"),
            is_sensitive: f.optional("is_sensitive"),
            event_data: f.optional_object("event_data"),
        }
        .assemble();

        let Fields {
            mut errors, failed, ..
        } = f;
        // A field that could not be read is already reported; its placeholder
        // value must not produce a second, confusing message.
        errors.extend(
            rule_errors(&event, nanos(now))
                .into_iter()
                .filter(|e| !failed.contains(e.field.split('.').next().unwrap_or(""))),
        );
        if errors.is_empty() {
            Ok(event)
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

impl AuditEvent {
    /// Reads a batch body (a JSON array of events) as of `now`: each event, or
    /// every problem found in it.
    ///
    /// A batch whose every event is valid is read straight into typed fields
    /// (the common case, and the cheap one); any other goes through
    /// [`AuditEvent::from_json`] event by event, which finds and words every
    /// problem. Both give the same answer for every body. `Err` when the body
    /// is not JSON or not an array.
    pub fn batch_from_json(
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<AuditEvent, ValidationErrors>>, serde_json::Error> {
        if let Some(events) = sent::accept_batch(body, now) {
            return Ok(events.into_iter().map(Ok).collect());
        }
        let values: Vec<Value> = serde_json::from_slice(body)?;
        Ok(values
            .into_iter()
            .map(|value| AuditEvent::from_json(value, now))
            .collect())
    }
}

/// An event's fields as read from JSON, before the defaults of the fields a
/// client may leave out; [`Read::assemble`] is the one place those defaults
/// are applied, for both ways of reading ([`AuditEvent::from_json`] and the
/// typed fast path of [`AuditEvent::batch_from_json`]).
struct Read {
    version: Option<String>,
    event_id: Option<Uuid>,
    event_type: String,
    event_timestamp: DateTime<Utc>,
    event_action: String,
    event_outcome: EventOutcome,
    actor_type: Option<String>,
    actor_id: Option<String>,
    actor_ip: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    event_category: String,
    correlation_id: String,
    parent_event_id: Option<Uuid>,
    namespace: Option<String>,
    cluster_id: Option<String>,
    severity: Option<String>,
    duration_ms: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    retention_days: Option<u32>,
    is_sensitive: Option<bool>,
    event_data: Option<Map<String, Value>>,
}

impl Read {
    fn assemble(self) -> AuditEvent {
        AuditEvent {
            version: self.version.unwrap_or_else(|| CONTRACT_VERSION.to_owned()),
            event_id: self.event_id,
            event_type: self.event_type,
            event_timestamp: self.event_timestamp,
            event_action: self.event_action,
            event_outcome: self.event_outcome,
            actor_type: self
                .actor_type
                .unwrap_or_else(|| DEFAULT_ACTOR_TYPE.to_owned()),
            actor_id: self
                .actor_id
                .unwrap_or_else(|| default_actor_id(&self.event_category)),
            actor_ip: self.actor_ip,
            resource_type: self
                .resource_type
                .unwrap_or_else(|| self.event_category.clone()),
            resource_id: self
                .resource_id
                .unwrap_or_else(|| self.correlation_id.clone()),
            event_category: self.event_category,
            correlation_id: self.correlation_id,
            parent_event_id: self.parent_event_id,
            namespace: self.namespace,
            cluster_id: self.cluster_id,
            severity: self.severity,
            duration_ms: self.duration_ms,
            error_code: self.error_code,
            error_message: self.error_message,
            retention_days: self.retention_days.unwrap_or(RETENTION_DAYS_MAX),
            is_sensitive: self.is_sensitive.unwrap_or(false),
            event_data: self.event_data.unwrap_or_default(),
        }
    }
}

/// Reads fields out of a JSON object, remembering which ones failed.
struct Fields {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
    failed: BTreeSet<String>,
}

impl Fields {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.failed.insert(field.to_owned());
        self.errors.push(FieldError::new(field, message));
    }

    fn take_present(&mut self, field: &str) -> Option<Value> {
        match self.map.remove(field) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn decode<T: DeserializeOwned>(&mut self, field: &str, value: Value) -> Option<T> {
        let kind = kind_of(&value);
        match serde_json::from_value(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = e.to_string();
                let expected = msg
                    .split_once("expected ")
                    .map(|(_, exp)| exp.to_owned())
                    .unwrap_or(msg);
                self.fail(field, format!("must be {expected}, got {kind}"));
                None
            }
        }
    }

    fn optional<T: DeserializeOwned>(&mut self, field: &str) -> Option<T> {
        let value = self.take_present(field)?;
        self.decode(field, value)
    }

    fn required<T: DeserializeOwned>(&mut self, field: &str) -> Option<T> {
        if self.map.get(field).is_none_or(Value::is_null) {
            self.fail(field, "is required");
            return None;
        }
        self.optional(field)
    }

    fn optional_uuid(&mut self, field: &str) -> Option<Uuid> {
        let text: String = self.optional(field)?;
        match Uuid::parse_str(&text) {
            Ok(id) => Some(id),
            Err(_) => {
                self.fail(field, format!("must be a UUID, got {text:?}"));
                None
            }
        }
    }

    /// A `YYYY-MM-DD` date, checked and not kept.
    fn optional_date(&mut self, field: &str) {
        let Some(text) = self.optional::<String>(field) else {
            return;
        };
        if chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").is_err() {
            self.fail(field, format!("must be a date (YYYY-MM-DD), got {text:?}"));
        }
    }

    fn required_timestamp(&mut self, field: &str) -> DateTime<Utc> {
        let parsed = self
            .required::<String>(field)
            .and_then(|text| match crate::timestamp::parse(&text) {
                Ok(ts) => Some(ts),
                Err(e) => {
                    self.fail(field, format!("must be an RFC 3339 timestamp ({e})"));
                    None
                }
            });
        parsed.unwrap_or(DateTime::UNIX_EPOCH)
    }

    fn required_outcome(&mut self, field: &str) -> EventOutcome {
        let parsed =
            self.required::<String>(field)
                .and_then(|text| match EventOutcome::parse(&text) {
                    Some(o) => Some(o),
                    None => {
                        self.fail(
                            field,
                            format!("must be one of success, failure, pending; got {text:?}"),
                        );
                        None
                    }
                });
        parsed.unwrap_or(EventOutcome::Success)
    }

    fn optional_object(&mut self, field: &str) -> Option<Map<String, Value>> {
        match self.take_present(field)? {
            Value::Object(m) => Some(m),
            other => {
                self.fail(
                    field,
                    format!("must be a JSON object, got {}", kind_of(&other)),
                );
                None
            }
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The contract's rules on an already typed event.
fn rule_errors(e: &AuditEvent, now: i64) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));

    if e.version != CONTRACT_VERSION {
        err(
            "version",
            format!("must be \"{CONTRACT_VERSION}\", got {:?}", e.version),
        );
    }
    if e.event_id.is_some_and(|id| id.is_nil()) {
        err("event_id", "must not be the nil UUID".into());
    }
    if let Some(msg) = text_rule(&e.event_type, 1, EVENT_TYPE_MAX_LEN) {
        err("event_type", msg);
    } else if !e
        .event_type
        .bytes()
        .fold(true, |ok, c| ok & EVENT_TYPE_BYTES[usize::from(c)])
    {
        err(
            "event_type",
            "must contain only ASCII letters, digits, '.', '_' and '-'".into(),
        );
    }
    let required_texts: [(&str, &str, usize); 2] = [
        ("event_category", &e.event_category, EVENT_CATEGORY_MAX_LEN),
        ("event_action", &e.event_action, EVENT_ACTION_MAX_LEN),
    ];
    for (field, value, max) in required_texts {
        if let Some(msg) = text_rule(value, 1, max) {
            err(field, msg);
        }
    }
    // Defaulted when absent; `""` is a value like any other (as the reference
    // stores it), so only the upper bounds and the character rules apply.
    let defaulted_texts: [(&str, &str, usize); 4] = [
        ("actor_type", &e.actor_type, SHORT_TEXT_MAX_LEN),
        ("actor_id", &e.actor_id, ID_TEXT_MAX_LEN),
        ("resource_type", &e.resource_type, SHORT_TEXT_MAX_LEN),
        ("resource_id", &e.resource_id, ID_TEXT_MAX_LEN),
    ];
    for (field, value, max) in defaulted_texts {
        if let Some(msg) = text_rule(value, 0, max) {
            err(field, msg);
        }
    }
    if let Some(msg) = text_rule(&e.correlation_id, 1, CORRELATION_ID_MAX_LEN) {
        err("correlation_id", msg);
    }
    let optional_texts: [(&str, &Option<String>, usize); 5] = [
        ("namespace", &e.namespace, NAMESPACE_MAX_LEN),
        ("cluster_id", &e.cluster_id, ID_TEXT_MAX_LEN),
        ("severity", &e.severity, SHORT_TEXT_MAX_LEN),
        ("error_code", &e.error_code, ID_TEXT_MAX_LEN),
        ("error_message", &e.error_message, ERROR_MESSAGE_MAX_LEN),
    ];
    for (field, value, max) in optional_texts {
        if let Some(msg) = value.as_deref().and_then(|v| text_rule(v, 0, max)) {
            err(field, msg);
        }
    }
    if let Some(ip) = &e.actor_ip {
        if ip.parse::<IpAddr>().is_err() {
            err(
                "actor_ip",
                format!("must be an IPv4 or IPv6 address, got {ip:?}"),
            );
        }
    }
    if e.duration_ms.is_some_and(|d| d < 0) {
        err("duration_ms", "must not be negative".into());
    }
    if !(RETENTION_DAYS_MIN..=RETENTION_DAYS_MAX).contains(&e.retention_days) {
        err(
            "retention_days",
            format!(
                "must be between {RETENTION_DAYS_MIN} and {RETENTION_DAYS_MAX}, got {}",
                e.retention_days
            ),
        );
    }
    match timestamp_window(e.event_timestamp, now) {
        Window::Inside => {}
        Window::Future => err(
            "event_timestamp",
            format!(
                "must not be more than {} minutes in the future (check the sender's clock)",
                MAX_FUTURE_SKEW.as_secs() / 60
            ),
        ),
        Window::Past => err(
            "event_timestamp",
            format!(
                "must not be older than {} days",
                MAX_EVENT_AGE.as_secs() / 86_400
            ),
        ),
    }
    event_data_rules(e, &mut errors);
    errors
}

fn text_rule(value: &str, min: usize, max: usize) -> Option<String> {
    // Byte length bounds the character count, so the count is only needed near
    // the limits (this runs for every field of every recorded event).
    let len = if value.len() <= max && value.len() >= min {
        None
    } else {
        Some(value.chars().count())
    };
    if let Some(len) = len {
        if len < min {
            return Some(if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must have at least {min} characters")
            });
        }
        if len > max {
            return Some(format!("must be at most {max} characters, got {len}"));
        }
    }
    // Short identifiers refuse every control character (U+0000 included).
    // Nearly all are printable ASCII, which one word-at-a-time pass settles;
    // only the rest is looked at char by char.
    if max <= ID_TEXT_MAX_LEN {
        if printable_ascii(value.as_bytes()) {
            return None;
        }
        if value.contains('\0') {
            return Some(NUL_MESSAGE.to_owned());
        }
        if value.chars().any(char::is_control) {
            return Some("must not contain control characters".to_owned());
        }
        return None;
    }
    // PostgreSQL text cannot hold U+0000, so no field may (whatever its length).
    if value.contains('\0') {
        return Some(NUL_MESSAGE.to_owned());
    }
    None
}

/// Every byte is printable ASCII (0x20..=0x7e). Eight bytes at a time
/// (SWAR): the identifiers this runs on are a few dozen bytes, too short for
/// the compiler's vector loops, and `record()` checks a dozen per event.
fn printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte below 0x20 sets its high bit in `below` (the borrow of
    // `b - 0x20`, on a byte under 0x80); one above 0x7e sets it in `above`
    // (the carry of `b + 1` into 0x80, or its own high bit). A borrow or
    // carry crossing into the next byte only happens beside a byte already
    // caught, so the word's answer is exact.
    fn word_ok(x: u64) -> bool {
        let below = x.wrapping_sub(ONES * 0x20) & !x;
        let above = x.wrapping_add(ONES) | x;
        (below | above) & HIGH == 0
    }
    if bytes.len() < 8 {
        return bytes
            .iter()
            .fold(true, |ok, b| ok & (0x20..0x7f).contains(b));
    }
    let word = |at: usize| {
        let eight: [u8; 8] = bytes[at..at + 8].try_into().expect("eight bytes");
        word_ok(u64::from_ne_bytes(eight))
    };
    // Whole words, then the last eight bytes (overlapping the last whole
    // word), which cover the remainder without copying it anywhere.
    (0..bytes.len() / 8).fold(true, |ok, i| ok & word(i * 8)) & word(bytes.len() - 8)
}

/// The bytes an `event_type` may hold: ASCII letters, digits, `.`, `_`, `-`.
static EVENT_TYPE_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-';
        b += 1;
    }
    table
};

/// Where a timestamp falls against the accepted window around `now`.
enum Window {
    Inside,
    Future,
    Past,
}

/// Nanoseconds since the epoch, saturated outside 1677..2262 (centuries from
/// any clock this runs on, so a saturated `now` still judges every window).
fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() > 0 {
        i64::MAX
    } else {
        i64::MIN
    })
}

/// The timestamp window (`MAX_FUTURE_SKEW` ahead, `MAX_EVENT_AGE` back), in
/// integer nanoseconds: `record()` checks it for every event, and chrono's
/// calendar arithmetic on `now` cost more than most of the rules together.
fn timestamp_window(at: DateTime<Utc>, now: i64) -> Window {
    const SKEW: i64 = MAX_FUTURE_SKEW.as_nanos() as i64;
    const AGE: i64 = MAX_EVENT_AGE.as_nanos() as i64;
    let at = nanos(at);
    if at > now.saturating_add(SKEW) {
        Window::Future
    } else if at < now.saturating_sub(AGE) {
        Window::Past
    } else {
        Window::Inside
    }
}

/// Why a text holding U+0000 is refused: PostgreSQL `text` and `json` cannot
/// store it, and a rule that differed between the backends would let an event
/// be accepted by one store and wedge the other.
const NUL_MESSAGE: &str = "must not contain U+0000 (NUL)";

fn event_data_rules(e: &AuditEvent, errors: &mut Vec<FieldError>) {
    let (depth, bound, nul) = shape(&e.event_data);
    if nul {
        errors.push(FieldError::new(
            "event_data",
            format!("{NUL_MESSAGE} in any key or string"),
        ));
    }
    // The bound over-estimates the JSON size; serialise only when it might matter.
    if bound > EVENT_DATA_MAX_BYTES {
        let size = json_size(&e.event_data);
        if size > EVENT_DATA_MAX_BYTES {
            errors.push(FieldError::new(
                "event_data",
                format!("must be at most {EVENT_DATA_MAX_BYTES} bytes as JSON, got {size}"),
            ));
        }
    }
    if depth > EVENT_DATA_MAX_DEPTH {
        errors.push(FieldError::new(
            "event_data",
            format!("must be nested at most {EVENT_DATA_MAX_DEPTH} levels deep, got {depth}"),
        ));
    }
    match e.event_data.get("event_type") {
        None => {}
        Some(Value::String(inner)) if *inner == e.event_type => {}
        Some(other) => errors.push(FieldError::new(
            "event_data.event_type",
            format!(
                "must equal the outer event_type {:?} when present, got {other}",
                e.event_type
            ),
        )),
    }
    errors.extend(crate::payload::check(&e.event_type, &e.event_data));
}

/// Nesting depth of an object (itself depth 1), an upper bound of its
/// compact JSON size (every string byte counted as a worst-case `\u00XX`
/// escape) and whether any key or string holds U+0000, in one walk.
fn shape(map: &Map<String, Value>) -> (usize, usize, bool) {
    let mut depth = 0;
    let mut bound = 2;
    let mut nul = false;
    for (k, v) in map {
        let (d, b, n) = value_shape(v);
        depth = depth.max(d);
        bound += string_bound(k) + 2 + b;
        nul |= n || k.contains('\0');
    }
    (1 + depth, bound, nul)
}

fn value_shape(v: &Value) -> (usize, usize, bool) {
    match v {
        Value::Null | Value::Bool(_) => (0, 5, false),
        Value::Number(_) => (0, 32, false),
        Value::String(s) => (0, string_bound(s), s.contains('\0')),
        Value::Array(items) => {
            let mut depth = 0;
            let mut bound = 2;
            let mut nul = false;
            for item in items {
                let (d, b, n) = value_shape(item);
                depth = depth.max(d);
                bound += b + 1;
                nul |= n;
            }
            (1 + depth, bound, nul)
        }
        Value::Object(map) => shape(map),
    }
}

fn string_bound(s: &str) -> usize {
    2 + 6 * s.len()
}

/// Compact JSON length without building the string.
fn json_size(data: &Map<String, Value>) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Map<String, Value> to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, data);
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The word-at-a-time check against the byte-at-a-time definition: every
    /// byte value at every position of every length up to 17 (so in whole
    /// words, in the overlapping last word and in strings under a word),
    /// among printable neighbours.
    #[test]
    fn printable_ascii_agrees_with_the_definition_for_every_byte_and_position() {
        let mut checked = 0;
        for len in 1..=17 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let expected = bytes.iter().all(|c| (0x20..0x7f).contains(c));
                    assert_eq!(printable_ascii(&bytes), expected, "{bytes:?}");
                    checked += 1;
                }
            }
        }
        assert!(printable_ascii(b""));
        assert!(!printable_ascii("caf\u{e9}".as_bytes()));
        assert!(!printable_ascii("\u{85}next-line".as_bytes()));
        println!("printable_ascii: {checked} strings checked");
    }

    fn valid_json(now: DateTime<Utc>) -> Value {
        json!({
            "version": "1.0",
            "event_type": "gateway.signal.received",
            "event_timestamp": crate::timestamp::format(&now),
            "event_category": "gateway",
            "event_action": "received",
            "event_outcome": "success",
            "actor_type": "service",
            "actor_id": "gateway",
            "resource_type": "Deployment",
            "resource_id": "payments/api",
            "correlation_id": "rr-1",
            "event_data": {"signal": "HighMemory"}
        })
    }

    fn fields_of(err: ValidationErrors) -> Vec<String> {
        err.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_complete_event_parses_with_defaults_applied() {
        let now = Utc::now();
        let event = AuditEvent::from_json(valid_json(now), now).unwrap();
        assert_eq!(event.retention_days, RETENTION_DAYS_MAX);
        assert!(!event.is_sensitive);
        assert_eq!(event.event_id, None);
        assert_eq!(event.event_outcome, EventOutcome::Success);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let now = Utc::now();
        let mut v = valid_json(now);
        let obj = v.as_object_mut().unwrap();
        obj.remove("event_action");
        obj.insert("event_outcome".into(), json!("maybe"));
        obj.insert("retention_days".into(), json!(9000));
        obj.insert("duration_ms".into(), json!("slow"));
        obj.insert("correlation_id".into(), json!(""));
        obj.insert("parent_event_date".into(), json!("yesterday"));
        let fields = fields_of(AuditEvent::from_json(v, now).unwrap_err());
        for expected in [
            "event_action",
            "event_outcome",
            "retention_days",
            "duration_ms",
            "correlation_id",
            "parent_event_date",
        ] {
            assert!(
                fields.contains(&expected.to_owned()),
                "{expected} missing from {fields:?}"
            );
        }
        assert_eq!(fields.len(), 6, "no duplicate reports: {fields:?}");
    }

    #[test]
    fn the_reference_clients_leniency_applies() {
        // Shaped as the reference platform's client sends it: no actor_* or
        // resource_*, "" in optional fields, its own names and fields we do not keep.
        let now = Utc::now();
        let mut v = valid_json(now);
        let obj = v.as_object_mut().unwrap();
        for field in ["actor_type", "actor_id", "resource_type", "resource_id"] {
            obj.remove(field);
        }
        obj.insert("namespace".into(), json!(""));
        obj.insert("severity".into(), json!(""));
        obj.insert("cluster_name".into(), json!("prod-eu-1"));
        obj.insert("parent_event_date".into(), json!("2026-01-02"));
        obj.insert("trace_id".into(), json!({"any": "shape"}));
        let event = AuditEvent::from_json(v, now).unwrap();
        assert_eq!(event.actor_type, DEFAULT_ACTOR_TYPE);
        assert_eq!(event.actor_id, "gateway-service");
        assert_eq!(event.resource_type, "gateway");
        assert_eq!(event.resource_id, "rr-1");
        assert_eq!(event.namespace.as_deref(), Some(""));
        assert_eq!(event.severity.as_deref(), Some(""));
        assert_eq!(event.cluster_id.as_deref(), Some("prod-eu-1"));

        // Sent as "", the actor fields are kept as sent, not defaulted.
        let mut v = valid_json(now);
        v["actor_id"] = json!("");
        assert_eq!(AuditEvent::from_json(v, now).unwrap().actor_id, "");
    }

    #[test]
    fn a_wrongly_typed_field_is_reported_once() {
        let now = Utc::now();
        let mut v = valid_json(now);
        v["event_type"] = json!(42);
        let err = AuditEvent::from_json(v, now).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].field, "event_type");
        assert!(err.0[0].message.contains("got a number"), "{err}");
    }

    #[test]
    fn timestamps_outside_the_window_are_rejected() {
        let now = Utc::now();
        for (offset, word) in [
            (chrono::Duration::minutes(61), "future"),
            (chrono::Duration::days(-8), "older"),
        ] {
            let mut v = valid_json(now);
            v["event_timestamp"] = json!(crate::timestamp::format(&(now + offset)));
            let err = AuditEvent::from_json(v, now).unwrap_err();
            assert_eq!(fields_of(err.clone()), ["event_timestamp"]);
            assert!(err.0[0].message.contains(word), "{err}");
        }
    }

    #[test]
    fn event_data_must_be_small_shallow_and_consistent() {
        let now = Utc::now();
        let mut deep = json!("leaf");
        for _ in 0..EVENT_DATA_MAX_DEPTH {
            deep = json!({ "x": deep });
        }
        let mut v = valid_json(now);
        v["event_data"] = json!({ "nested": deep, "event_type": "other.type" });
        let fields = fields_of(AuditEvent::from_json(v, now).unwrap_err());
        assert_eq!(fields, ["event_data", "event_data.event_type"]);

        let mut v = valid_json(now);
        v["event_data"] = json!({ "blob": "x".repeat(EVENT_DATA_MAX_BYTES) });
        let err = AuditEvent::from_json(v, now).unwrap_err();
        assert!(err.0[0].message.contains("bytes"), "{err}");
    }

    #[test]
    fn event_data_at_the_depth_limit_is_accepted() {
        let now = Utc::now();
        let mut deep = json!("leaf");
        for _ in 0..EVENT_DATA_MAX_DEPTH - 1 {
            deep = json!({ "x": deep });
        }
        let mut v = valid_json(now);
        v["event_data"] = deep;
        AuditEvent::from_json(v, now).unwrap();
    }

    #[test]
    fn non_objects_are_rejected_with_their_kind() {
        let err = AuditEvent::from_json(json!([1]), Utc::now()).unwrap_err();
        assert!(err.0[0].message.contains("an array"), "{err}");
    }

    #[test]
    fn the_builder_produces_a_valid_event() {
        let event = AuditEvent::builder("gateway.crd.created", "rr-abc")
            .category("gateway")
            .action("created")
            .actor("service", "gateway")
            .resource("RemediationRequest", "rr-abc")
            .build();
        event.validate().unwrap();
        let round_trip = AuditEvent::from_json(serde_json::to_value(&event).unwrap(), Utc::now());
        assert_eq!(round_trip.unwrap(), event);
    }

    #[test]
    fn nul_is_refused_in_every_text_field_and_anywhere_in_event_data() {
        // PostgreSQL text and json cannot hold U+0000; one rule for both backends.
        let now = Utc::now();
        let mut v = valid_json(now);
        v["error_message"] = json!("boom\u{0}");
        v["namespace"] = json!("ns\u{0}");
        let fields = fields_of(AuditEvent::from_json(v, now).unwrap_err());
        assert_eq!(fields, ["namespace", "error_message"]);

        for data in [
            json!({"k": "a\u{0}b"}),
            json!({"k\u{0}": 1}),
            json!({"deep": [{"x": ["\u{0}"]}]}),
        ] {
            let mut v = valid_json(now);
            v["event_data"] = data.clone();
            let err = AuditEvent::from_json(v, now).unwrap_err();
            assert_eq!(fields_of(err.clone()), ["event_data"], "{data}");
            assert!(err.0[0].message.contains("U+0000"), "{err}");
        }
    }

    #[test]
    fn a_bad_ip_and_nil_id_are_rejected() {
        let mut event = AuditEvent::builder("a.b", "c")
            .category("x")
            .action("y")
            .actor("service", "z")
            .resource("r", "s")
            .build();
        event.actor_ip = Some("not-an-ip".into());
        event.event_id = Some(Uuid::nil());
        let fields = fields_of(event.validate().unwrap_err());
        assert_eq!(fields, ["event_id", "actor_ip"]);
    }
}
