//! Sending one batch to DataStorage, and classifying the answer.
//!
//! The classification decides what happens to the events of a batch, and it is
//! the heart of "no event lost silently". Only one answer sets events aside:
//! DataStorage's own validation problem (`type` = the `validation-error` slug)
//! naming the refused events by `errors[].index`; exactly those are set aside
//! and the rest are resent. Every other refusal (404, 405, 415, 421, a proxy's
//! 400, gRPC `Unimplemented` / `NotFound`, ...) says nothing about the events:
//! it is a deployment mistake (wrong path, port, scheme, a mesh in the way), so
//! the batch is kept and retried, with one actionable ERROR naming the URL and
//! the status. See the README's classification table.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::config::{AuditConfig, TransportKind};
use crate::event::AuditEvent;
use crate::problem::{Problem, ProblemType};

pub mod grpc;
pub mod http;

/// DataStorage's acknowledgement of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    /// Newly stored.
    pub created: u64,
    /// Already stored before (a retry of an earlier, acknowledged send).
    pub duplicates: u64,
}

/// Why a batch was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connect, DNS, timeout, 5xx, 408, 429: try again later.
    #[error("transient: {reason}")]
    Transient {
        /// What happened, for logs.
        reason: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// 401: the token is missing, expired or unknown; re-read it and retry.
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// What happened, for logs.
        reason: String,
    },
    /// 403: the caller lacks the RBAC verb. A deployment mistake, not a property
    /// of the events: retried (with an ERROR naming what is missing).
    #[error("forbidden: {reason}")]
    Forbidden {
        /// The server's explanation (names the verb and resource needed).
        reason: String,
    },
    /// A refusal that is not DataStorage judging the events: a wrong path or
    /// port, `http://` against a TLS port, a redirect turned into a GET, a
    /// proxy or mesh in the way. The events are fine; the deployment is not.
    /// Retried with backoff, never set aside.
    #[error("misrouted ({status}): {reason}")]
    Misrouted {
        /// HTTP status (or the gRPC code's HTTP equivalent).
        status: u16,
        /// Summary, for the ERROR line.
        reason: String,
    },
    /// DataStorage's validation problem: the events at `indexes` (positions in
    /// the batch sent, sorted, unique) break the contract; the others were not
    /// stored either (all-or-nothing) and are resent.
    #[error("{} event(s) refused by DataStorage's validation", indexes.len())]
    Invalid {
        /// Positions of the refused events in the batch.
        indexes: Vec<usize>,
        /// The problem document (its `errors` name each refused field).
        problem: Box<Problem>,
    },
}

/// One way of delivering a batch.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends `events` as one batch with an optional bearer token.
    async fn send(&self, events: &[AuditEvent], token: Option<&str>) -> Result<Ack, SendError>;

    /// Where the batches go, for log lines (default: unknown).
    fn target(&self) -> String {
        String::from("(custom transport)")
    }
}

/// Builds the configured transport.
pub fn build(config: &AuditConfig) -> Result<Box<dyn Transport>, String> {
    let ca = read_ca(config)?;
    Ok(match config.transport {
        TransportKind::Http => Box::new(http::HttpTransport::new(config, ca.as_deref())?),
        TransportKind::Grpc => Box::new(grpc::GrpcTransport::new(config, ca.as_deref())?),
    })
}

/// The PEM bytes of `ca_file`, when configured.
pub(crate) fn read_ca(config: &AuditConfig) -> Result<Option<Vec<u8>>, String> {
    match &config.ca_file {
        Some(path) => std::fs::read(path)
            .map(Some)
            .map_err(|e| format!("reading ca_file {}: {e}", path.display())),
        None => Ok(None),
    }
}

/// Classifies a refusal that is neither transient nor about credentials:
/// `Invalid` only for DataStorage's own problems about particular events (its
/// validation problem, and its `event-id-conflict` for an id reused with other
/// content) whose `errors` name indexes inside the batch; `Misrouted` for
/// everything else. A conflict can never succeed on resend, so retrying it
/// would wedge every event behind it.
pub(crate) fn refusal(
    status: u16,
    problem: Option<Problem>,
    reason: String,
    batch_len: usize,
) -> SendError {
    if let Some(problem) = problem {
        if problem.is(ProblemType::ValidationError) || problem.is(ProblemType::Conflict) {
            let mut indexes: Vec<usize> = problem.errors.iter().filter_map(|e| e.index).collect();
            indexes.sort_unstable();
            indexes.dedup();
            let inside = indexes.last().is_some_and(|last| *last < batch_len);
            if inside {
                return SendError::Invalid {
                    indexes,
                    problem: Box::new(problem),
                };
            }
        }
    }
    SendError::Misrouted { status, reason }
}

/// Parses `Retry-After` as delay-seconds or as an HTTP-date (RFC 9110 §10.2.3);
/// a date in the past means "now".
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::FieldError;

    #[test]
    fn retry_after_in_seconds_and_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(42))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(42));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn only_a_validation_problem_with_indexes_inside_the_batch_sets_events_aside() {
        let validation = |indexes: &[usize]| {
            Problem::new(ProblemType::ValidationError, "bad").with_errors(
                indexes
                    .iter()
                    .map(|i| FieldError::new("retention_days", "x").at(*i))
                    .collect(),
            )
        };
        assert!(matches!(
            refusal(400, Some(validation(&[3, 1, 3])), "r".into(), 5),
            SendError::Invalid { indexes, .. } if indexes == vec![1, 3]
        ));
        // An event id reused with other content: only that event is set aside.
        let conflict = Problem::new(ProblemType::Conflict, "reused id")
            .with_errors(vec![FieldError::new("event_id", "x").at(2)]);
        assert!(matches!(
            refusal(409, Some(conflict), "r".into(), 5),
            SendError::Invalid { indexes, .. } if indexes == vec![2]
        ));
        // An index outside the batch: not an answer about these events.
        assert!(matches!(
            refusal(400, Some(validation(&[5])), "r".into(), 5),
            SendError::Misrouted { status: 400, .. }
        ));
        // A validation problem without indexes, another problem type, no problem.
        assert!(matches!(
            refusal(400, Some(validation(&[])), "r".into(), 5),
            SendError::Misrouted { .. }
        ));
        assert!(matches!(
            refusal(
                400,
                Some(Problem::new(ProblemType::MalformedJson, "x")),
                "r".into(),
                5
            ),
            SendError::Misrouted { .. }
        ));
        assert!(matches!(
            refusal(400, None, "r".into(), 5),
            SendError::Misrouted { .. }
        ));
    }
}
