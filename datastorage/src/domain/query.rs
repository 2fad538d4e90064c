//! Queries over stored events: filters, time bounds, keyset cursors and offsets.
//!
//! Pages are ordered newest first by `(event_timestamp, event_id)`. The cursor is
//! that pair for the last event of a page, so a page costs one index range scan
//! however deep the client has paged, and events stored meanwhile never shift it.
//! `offset` (the reference platform's pagination) is served too, bounded by
//! [`MAX_OFFSET`] because its cost grows with its value; deeper pages use the
//! cursor.
//!
//! Parameters are read as the reference's DataStorage reads them: unknown ones
//! are ignored, an empty value is no filter, and `since`/`until` take its time
//! forms as well as ours.

use std::collections::HashMap;

use audit_sdk::{EventOutcome, FieldError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use uuid::Uuid;

/// Default page size.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size.
pub const MAX_LIMIT: usize = 1000;

/// Largest `offset` (its cost grows with it; page deeper with `cursor`).
pub const MAX_OFFSET: usize = 100_000;
/// Longest `detail_key`.
pub const MAX_DETAIL_KEY_LEN: usize = 255;

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
    /// `event_data` has this top-level key with this (text) value.
    pub detail: Option<DetailFilter>,
    /// Page size (1..=1000).
    pub limit: usize,
    /// Events to skip (after `cursor`, when both are given).
    pub offset: usize,
    /// Continue after this position.
    pub cursor: Option<Cursor>,
}

/// `detail_key` / `detail_value`: a top-level `event_data` key whose value, as
/// text (a JSON string's contents), equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailFilter {
    /// The `event_data` key.
    pub key: String,
    /// The value it must have.
    pub value: String,
}

impl EventQuery {
    /// Parses raw query parameters, reporting every bad one at once.
    pub fn parse(
        params: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
        let time = |name: &str, errors: &mut Vec<FieldError>| {
            let raw = text(name)?;
            match parse_time_bound(&raw, now) {
                Some(t) => Some(t),
                None => {
                    errors.push(FieldError::new(
                        name,
                        format!("must be an RFC 3339 timestamp, a date (2006-01-02), a UTC time (2006-01-02T15:04:05) or a duration back from now (15m, 1h30m, 24h, 7d); got {raw:?}"),
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
        let limit = match text("limit") {
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
        let offset = match text("offset") {
            None => 0,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if n <= MAX_OFFSET => n,
                _ => {
                    errors.push(FieldError::new(
                        "offset",
                        format!("must be an integer between 0 and {MAX_OFFSET} (page deeper with cursor), got {raw:?}"),
                    ));
                    0
                }
            },
        };
        let detail = match (text("detail_key"), text("detail_value")) {
            (None, None) => None,
            (Some(key), Some(value)) if key.chars().count() <= MAX_DETAIL_KEY_LEN => {
                Some(DetailFilter { key, value })
            }
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "detail_key",
                    format!("must be at most {MAX_DETAIL_KEY_LEN} characters"),
                ));
                None
            }
            (key, _) => {
                let (field, other) = if key.is_some() {
                    ("detail_value", "detail_key")
                } else {
                    ("detail_key", "detail_value")
                };
                errors.push(FieldError::new(field, format!("is required with {other}")));
                None
            }
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
            detail,
            limit,
            offset,
            cursor,
        })
    }
}

/// Parses a time bound in any form the reference platform accepts, plus ours:
/// an RFC 3339 instant, a date (`2006-01-02`, midnight UTC), a date and time
/// without zone (`2006-01-02T15:04:05`, UTC), or a duration back from `now`
/// (Go's `1h30m`, `90s`, and `7d`).
pub fn parse_time_bound(raw: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(t) = audit_sdk::timestamp::parse(raw) {
        return Some(t);
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S") {
        return Some(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc());
    }
    // humantime reads `1h30m`, `15m`, `7d`, `90s`; a bare number is not a duration.
    if raw.starts_with(|c: char| c.is_ascii_digit()) && !raw.bytes().all(|b| b.is_ascii_digit()) {
        let span = humantime::parse_duration(raw).ok()?;
        return now.checked_sub_signed(Duration::from_std(span).ok()?);
    }
    None
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
        assert_eq!(parse_time_bound("-1h", now), None);
        assert_eq!(parse_time_bound("h", now), None);
        assert_eq!(parse_time_bound("12", now), None);
        assert_eq!(parse_time_bound("yesterday", now), None);
    }

    #[test]
    fn the_reference_platforms_time_forms_are_read() {
        let now = Utc::now();
        assert_eq!(
            parse_time_bound("1h30m", now),
            Some(now - Duration::minutes(90))
        );
        assert_eq!(
            parse_time_bound("90s", now),
            Some(now - Duration::seconds(90))
        );
        let day = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        assert_eq!(
            parse_time_bound("2026-01-02", now),
            Some(day.and_hms_opt(0, 0, 0).unwrap().and_utc())
        );
        assert_eq!(
            parse_time_bound("2026-01-02T15:04:05", now),
            Some(day.and_hms_opt(15, 4, 5).unwrap().and_utc())
        );
        assert_eq!(
            parse_time_bound("2026-01-02T15:04:05+02:00", now),
            Some(day.and_hms_opt(13, 4, 5).unwrap().and_utc())
        );
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
            &params(&[
                ("limit", "5000"),
                ("since", "yesterday"),
                ("offset", "-1"),
                ("detail_key", "signal_name"),
            ]),
            Utc::now(),
        )
        .unwrap_err();
        let mut fields: Vec<_> = err.iter().map(|e| e.field.as_str()).collect();
        fields.sort();
        assert_eq!(fields, ["detail_value", "limit", "offset", "since"]);
    }

    #[test]
    fn unknown_parameters_are_ignored_and_reference_ones_read() {
        let q = EventQuery::parse(
            &params(&[
                ("colour", "red"),
                ("offset", "20"),
                ("detail_key", "signal_name"),
                ("detail_value", "NodeNotReady"),
            ]),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(q.offset, 20);
        assert_eq!(
            q.detail,
            Some(DetailFilter {
                key: "signal_name".into(),
                value: "NodeNotReady".into()
            })
        );
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
