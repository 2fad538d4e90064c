//! Queries over stored events: filters, time bounds and keyset cursors.
//!
//! Pages are ordered newest first by `(event_timestamp, event_id)`. The cursor is
//! that pair for the last event of a page, so a page costs one index range scan
//! however deep the client has paged, and events stored meanwhile never shift it.

use std::collections::HashMap;

use audit_sdk::{EventOutcome, FieldError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;

/// The query parameters `GET /api/v1/audit/events` accepts.
pub const PARAMS: &[&str] = &[
    "correlation_id",
    "event_type",
    "event_category",
    "event_outcome",
    "severity",
    "since",
    "until",
    "limit",
    "cursor",
];

/// A position in the newest-first order: strictly older than this pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `event_timestamp` in microseconds since the epoch.
    pub timestamp_micros: i64,
    /// `event_id` of the last event returned.
    pub event_id: Uuid,
}

impl Cursor {
    /// Opaque text form handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.timestamp_micros, self.event_id))
    }

    /// Parses the text form; `None` when it was not produced by [`Cursor::encode`].
    pub fn decode(text: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        let (ts, id) = raw.split_once(':')?;
        Some(Self {
            timestamp_micros: ts.parse().ok()?,
            event_id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// A validated query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// Exact `correlation_id`.
    pub correlation_id: Option<String>,
    /// Exact `event_type`.
    pub event_type: Option<String>,
    /// Exact `event_category`.
    pub event_category: Option<String>,
    /// Exact `event_outcome`.
    pub event_outcome: Option<EventOutcome>,
    /// Exact `severity`.
    pub severity: Option<String>,
    /// Inclusive lower bound on `event_timestamp`.
    pub since: Option<DateTime<Utc>>,
    /// Inclusive upper bound on `event_timestamp`.
    pub until: Option<DateTime<Utc>>,
    /// Page size (1..=1000).
    pub limit: usize,
    /// Continue after this position.
    pub cursor: Option<Cursor>,
}

impl EventQuery {
    /// Parses raw query parameters, reporting every bad one at once.
    pub fn parse(
        params: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        for key in params.keys() {
            if !PARAMS.contains(&key.as_str()) {
                errors.push(FieldError::new(
                    key.as_str(),
                    format!("unknown query parameter (known: {})", PARAMS.join(", ")),
                ));
            }
        }
        let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
        let time = |name: &str, errors: &mut Vec<FieldError>| {
            let raw = text(name)?;
            match parse_time_bound(&raw, now) {
                Some(t) => Some(t),
                None => {
                    errors.push(FieldError::new(
                        name,
                        format!("must be an RFC 3339 timestamp or a relative duration like 15m, 24h, 7d; got {raw:?}"),
                    ));
                    None
                }
            }
        };
        let since = time("since", &mut errors);
        let until = time("until", &mut errors);
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                errors.push(FieldError::new("since", "must not be after until"));
            }
        }
        let event_outcome = text("event_outcome").and_then(|raw| {
            let parsed = EventOutcome::parse(&raw);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "event_outcome",
                    format!("must be one of success, failure, pending; got {raw:?}"),
                ));
            }
            parsed
        });
        let limit = match params.get("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        "limit",
                        format!("must be an integer between 1 and {MAX_LIMIT}, got {raw:?}"),
                    ));
                    DEFAULT_LIMIT
                }
            },
        };
        let cursor = text("cursor").and_then(|raw| {
            let parsed = Cursor::decode(&raw);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "cursor",
                    "is not a cursor returned by this API (pass next_cursor unchanged)",
                ));
            }
            parsed
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            correlation_id: text("correlation_id"),
            event_type: text("event_type"),
            event_category: text("event_category"),
            event_outcome,
            severity: text("severity"),
            since,
            until,
            limit,
            cursor,
        })
    }
}

/// Parses an RFC 3339 instant or a duration back from `now` (`30s`, `15m`, `24h`, `7d`).
pub fn parse_time_bound(raw: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(t) = audit_sdk::timestamp::parse(raw) {
        return Some(t);
    }
    // The unit is the last character, which need not be one byte long.
    let (unit_at, _) = raw.char_indices().next_back()?;
    let (number, unit) = raw.split_at(unit_at);
    let n: i64 = number.parse().ok().filter(|n| *n >= 0)?;
    let span = match unit {
        "s" => Duration::try_seconds(n)?,
        "m" => Duration::try_minutes(n)?,
        "h" => Duration::try_hours(n)?,
        "d" => Duration::try_days(n)?,
        _ => return None,
    };
    now.checked_sub_signed(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn relative_bounds_count_back_from_now() {
        let now = Utc::now();
        assert_eq!(
            parse_time_bound("24h", now),
            Some(now - Duration::hours(24))
        );
        assert_eq!(parse_time_bound("7d", now), Some(now - Duration::days(7)));
        assert_eq!(
            parse_time_bound("15m", now),
            Some(now - Duration::minutes(15))
        );
        assert_eq!(parse_time_bound("7w", now), None);
        assert_eq!(parse_time_bound("-1h", now), None);
        assert_eq!(parse_time_bound("h", now), None);
    }

    #[test]
    fn a_non_ascii_bound_is_refused_without_panicking() {
        let now = Utc::now();
        for raw in ["1é", "é", "24h\u{1F600}", "\u{1F600}"] {
            assert_eq!(parse_time_bound(raw, now), None, "{raw}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            timestamp_micros: 1_700_000_000_123_456,
            event_id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not-a-cursor"), None);
    }

    #[test]
    fn every_bad_parameter_is_reported() {
        let err = EventQuery::parse(
            &params(&[("limit", "5000"), ("since", "yesterday"), ("colour", "red")]),
            Utc::now(),
        )
        .unwrap_err();
        let mut fields: Vec<_> = err.iter().map(|e| e.field.as_str()).collect();
        fields.sort();
        assert_eq!(fields, ["colour", "limit", "since"]);
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let q = EventQuery::parse(&HashMap::new(), Utc::now()).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!(
            q,
            EventQuery {
                limit: DEFAULT_LIMIT,
                ..Default::default()
            }
        );
    }
}
