//! "Now" for the timestamp window that `record()` checks on every event.
//!
//! The instant stays an integer (nanoseconds since the epoch) instead of
//! going through chrono's calendar: `Utc::now()` and the date arithmetic on
//! it cost more than most of the event's rules together.
//!
//! (The coarse realtime clock would be cheaper still, but reading it without
//! libc means parsing the vDSO, which crashes a service run under valgrind.)

/// Nanoseconds since the Unix epoch (negative before it, saturated outside
/// 1677..2262).
pub(crate) fn now_nanos() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_chrono() {
        let before = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        let now = now_nanos();
        let after = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }
}
