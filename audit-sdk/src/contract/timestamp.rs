//! Timestamps on the wire: RFC 3339, UTC, exactly microsecond precision.
//!
//! One textual form per instant matters because the hash chain hashes the text:
//! an event read back from either storage backend must format identically.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Formats an instant the one way the contract allows (`2026-01-02T03:04:05.000006Z`).
pub fn format(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses any RFC 3339 instant, converts it to UTC and truncates it to microseconds.
pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| normalize(t.with_timezone(&Utc)))
}

/// Truncates to the microsecond precision the store keeps, and folds a leap
/// second (`…:59:60.x`) into the second after it, which is how both stores read
/// it back (they keep microseconds since the epoch, where no `:60` exists).
pub fn normalize(ts: DateTime<Utc>) -> DateTime<Utc> {
    let ts = ts.trunc_subsecs(6);
    if ts.timestamp_subsec_nanos() < 1_000_000_000 {
        return ts;
    }
    DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts)
}

pub(crate) fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(ts))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_converted_to_utc_and_truncated_to_micros() {
        let ts = parse("2026-01-02T05:04:05.123456789+02:00").unwrap();
        assert_eq!(format(&ts), "2026-01-02T03:04:05.123456Z");
    }

    #[test]
    fn a_leap_second_is_folded_into_the_next_second_before_anything_hashes_it() {
        // Both stores keep microseconds since the epoch, which have no :60; the
        // text that is hashed must be the text that is read back.
        let ts = parse("2016-12-31T23:59:60.250000Z").unwrap();
        assert_eq!(format(&ts), "2017-01-01T00:00:00.250000Z");
        let stored = DateTime::<Utc>::from_timestamp_micros(ts.timestamp_micros()).unwrap();
        assert_eq!(format(&stored), format(&ts));
        assert_eq!(ts.date_naive(), stored.date_naive());
    }

    #[test]
    fn whole_seconds_still_print_six_fraction_digits() {
        let ts = parse("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(format(&ts), "2026-01-02T03:04:05.000000Z");
    }
}
