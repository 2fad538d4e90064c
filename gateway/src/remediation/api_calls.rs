//! Every Kubernetes API call of the backend, with an explicit deadline and a
//! bounded retry budget.
//!
//! kube's default client retries 429/503/504 up to 15 times honouring
//! `Retry-After` (minutes per call) and has no read timeout; the Gateway turns
//! that layer off ([`client_config`]) and retries here instead, within a budget
//! that fits the HTTP `request_timeout`. Calls are plain futures awaited by the
//! request's task, so when the HTTP layer gives up nothing keeps running.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::BackendError;
use crate::config::KubernetesConfig;

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and creates (a create whose answer was lost comes back as 409
    /// AlreadyExists, which the caller recognises): every transient failure.
    Always,
    /// Writes that must not be applied twice: only answers that say the
    /// server did not apply it (429, 503).
    IfNotApplied,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The API server answered this status.
    Status {
        /// HTTP status.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// No answer within the deadline.
    Timeout(Duration),
    /// Connection or decoding trouble.
    Transport(String),
}

impl CallError {
    pub(crate) fn is(&self, code: u16) -> bool {
        matches!(self, Self::Status { code: c, .. } if *c == code)
    }

    /// No answer came (timeout, connection trouble): a write may or may not
    /// have been applied.
    pub(crate) fn is_ambiguous(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Transport(_))
    }

    fn is_transient(&self, retry: Retry) -> bool {
        match (self, retry) {
            (Self::Status { code, .. }, _) if *code == 429 || *code == 503 => true,
            (Self::Status { code, .. }, Retry::Always) => *code == 500 || *code == 504,
            (Self::Status { .. }, Retry::IfNotApplied) => false,
            (_, Retry::Always) => true,
            (_, Retry::IfNotApplied) => false,
        }
    }

    /// The backend error, naming what was being done.
    pub(crate) fn into_backend(self, what: &str) -> BackendError {
        match self {
            Self::Status { code, message } if code >= 500 || code == 429 => {
                BackendError::Unavailable(format!("{what}: {code} {message}"))
            }
            Self::Status { code, message } => {
                BackendError::Rejected(format!("{what}: {code} {message}"))
            }
            Self::Timeout(d) => {
                BackendError::Unavailable(format!("{what}: no answer within {d:?}"))
            }
            Self::Transport(e) => BackendError::Unavailable(format!("{what}: {e}")),
        }
    }
}

impl From<kube::Error> for CallError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => Self::Status {
                code: s.code,
                message: s.message,
            },
            other => Self::Transport(other.to_string()),
        }
    }
}

/// The deadline and retry budget of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallPolicy {
    timeout: Duration,
    retries: usize,
}

impl CallPolicy {
    pub(crate) fn new(config: &KubernetesConfig) -> Self {
        Self {
            timeout: config.call_timeout,
            retries: config.call_retries as usize,
        }
    }

    /// Runs `call` with the deadline, retrying transient failures as `retry` allows.
    pub(crate) async fn run<T, F, Fut>(&self, retry: Retry, call: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let timeout = self.timeout;
        let mut call = call;
        let attempt = move || {
            let request = call();
            async move {
                match tokio::time::timeout(timeout, request).await {
                    Ok(answer) => answer.map_err(CallError::from),
                    Err(_) => Err(CallError::Timeout(timeout)),
                }
            }
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(20))
                    .with_max_delay(MAX_BACKOFF)
                    .with_max_times(self.retries)
                    .with_jitter(),
            )
            .when(move |e: &CallError| e.is_transient(retry))
            .notify(|e, pause| tracing::debug!(error = ?e, ?pause, "Kubernetes API call failed; retrying"))
            .await
    }
}

/// `config` made fit for the backend: kube's own retry layer off (this
/// module retries within a budget instead) and every socket operation bounded
/// by the call deadline.
pub fn client_config(mut config: kube::Config, settings: &KubernetesConfig) -> kube::Config {
    config.default_retry = false;
    config.connect_timeout = Some(settings.call_timeout);
    config.read_timeout = Some(settings.call_timeout);
    config.write_timeout = Some(settings.call_timeout);
    config
}
