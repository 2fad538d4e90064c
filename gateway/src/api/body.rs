//! Request admission shared by the signal routes: the `X-Timestamp` freshness
//! check and a JSON body extractor whose every failure is a problem document
//! (415 a declared type that is not JSON, 413 too large, 400 malformed).
//!
//! A body without `Content-Type` is read as JSON, as the reference Gateway
//! does: some webhook senders and scripts omit the header, and refusing them
//! (a 4xx Alertmanager never retries) would drop their alerts for good.

use std::time::Duration;

use audit_sdk::problem::ProblemType;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::Value;
use service_kit::json_body::{json_bytes, BodyError, MissingContentType};

use super::problem::ApiError;

/// Header carrying when the sender emitted the request.
pub const TIMESTAMP_HEADER: &str = "x-timestamp";

/// A request body parsed as JSON.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state, MissingContentType::AsJson)
            .await
            .map_err(|e| match e {
                BodyError::UnsupportedMediaType(got) => ApiError::new(
                    ProblemType::UnsupportedMediaType,
                    format!("expected Content-Type application/json (or none), got {got}"),
                ),
                BodyError::TooLarge => ApiError::new(
                    ProblemType::PayloadTooLarge,
                    "request body exceeds the Gateway's limits.max_body_bytes",
                ),
                BodyError::Unreadable(why) => ApiError::new(ProblemType::MalformedJson, why),
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::new(
                ProblemType::MalformedJson,
                format!("body is not valid JSON: {e}"),
            )
        })
    }
}

/// Refuses a request whose `X-Timestamp` (RFC 3339 or Unix seconds) is older
/// than `max_age` or further than `max_skew` ahead of `now`; a request without
/// the header is not checked.
pub fn check_freshness(
    headers: &HeaderMap,
    now: DateTime<Utc>,
    max_age: Duration,
    max_skew: Duration,
) -> Result<(), ApiError> {
    let Some(raw) = headers.get(TIMESTAMP_HEADER) else {
        return Ok(());
    };
    let text = raw.to_str().unwrap_or("").trim();
    let sent = parse_timestamp(text).ok_or_else(|| {
        ApiError::new(
            ProblemType::StaleSignal,
            format!("X-Timestamp {text:?} is neither RFC 3339 nor Unix seconds"),
        )
    })?;
    check_age("X-Timestamp", sent, now, max_age, max_skew)
}

/// Refuses a signal that `what` (a header or a body field) dates `sent`, when
/// that is older than `max_age` or further than `max_skew` ahead of `now`.
pub fn check_age(
    what: &str,
    sent: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: Duration,
    max_skew: Duration,
) -> Result<(), ApiError> {
    let age = now.signed_duration_since(sent);
    if age > chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX) {
        return Err(ApiError::new(
            ProblemType::StaleSignal,
            format!(
                "{what} is {}s old; signals older than {}s (limits.max_signal_age) are refused",
                age.num_seconds(),
                max_age.as_secs()
            ),
        ));
    }
    if -age > chrono::Duration::from_std(max_skew).unwrap_or(chrono::Duration::MAX) {
        return Err(ApiError::new(
            ProblemType::StaleSignal,
            format!(
                "{what} is {}s in the future; more than {}s ahead is refused (check the sender's clock)",
                (-age).num_seconds(),
                max_skew.as_secs()
            ),
        ));
    }
    Ok(())
}

fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(secs) = text.parse::<i64>() {
        return DateTime::from_timestamp(secs, 0);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, HeaderValue::from_str(v).unwrap());
        h
    }

    const AGE: Duration = Duration::from_secs(300);
    const SKEW: Duration = Duration::from_secs(120);

    #[test]
    fn fresh_absent_and_unix_timestamps_pass() {
        let now = Utc::now();
        assert!(check_freshness(&HeaderMap::new(), now, AGE, SKEW).is_ok());
        assert!(check_freshness(&headers(&now.to_rfc3339()), now, AGE, SKEW).is_ok());
        let unix = (now.timestamp() - 60).to_string();
        assert!(check_freshness(&headers(&unix), now, AGE, SKEW).is_ok());
    }

    #[test]
    fn old_future_and_garbage_timestamps_are_stale() {
        let now = Utc::now();
        for v in [
            (now - chrono::Duration::minutes(6)).to_rfc3339(),
            (now + chrono::Duration::minutes(3)).to_rfc3339(),
            "yesterday".to_owned(),
        ] {
            let e = check_freshness(&headers(&v), now, AGE, SKEW).unwrap_err();
            assert!(e.problem().is(ProblemType::StaleSignal), "{v}");
        }
    }
}
