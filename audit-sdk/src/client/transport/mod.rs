//! Sending one batch to DataStorage, and classifying the answer.
//!
//! The classification decides whether an event is retried forever (transient),
//! retried after re-reading the token (unauthorized), or bisected to find the
//! poison events (permanent): it is the heart of "no event lost silently".

use std::time::Duration;

use async_trait::async_trait;

use crate::config::{AuditConfig, TransportKind};
use crate::event::AuditEvent;
use crate::problem::Problem;

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
    /// Connect, DNS, timeout, 5xx, 429: try again later.
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
    /// of the events: retried (with an ERROR naming what is missing) instead of
    /// bisecting every event of the batch into the rejected file.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// The server's explanation (names the verb and resource needed).
        reason: String,
    },
    /// Another 4xx: this batch will never be accepted as it is.
    #[error("rejected ({status}): {reason}")]
    Permanent {
        /// HTTP status (or the gRPC code's HTTP equivalent).
        status: u16,
        /// Summary, for logs and the rejected file.
        reason: String,
        /// The problem document, when the server sent one.
        problem: Option<Box<Problem>>,
    },
}

/// One way of delivering a batch.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends `events` as one batch with an optional bearer token.
    async fn send(&self, events: &[AuditEvent], token: Option<&str>) -> Result<Ack, SendError>;
}

/// Builds the configured transport.
pub fn build(config: &AuditConfig) -> Result<Box<dyn Transport>, String> {
    let ca = match &config.ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| format!("reading ca_file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    Ok(match config.transport {
        TransportKind::Http => Box::new(http::HttpTransport::new(config, ca.as_deref())?),
        TransportKind::Grpc => Box::new(grpc::GrpcTransport::new(config, ca.as_deref())?),
    })
}

/// Parses `Retry-After` given in seconds (the form DataStorage sends).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}
