//! Answers to accepted signals: one signal → 201/202 (200 for a resolved
//! alert) with its result, several alerts → 207 with one result per alert and
//! a summary.
//!
//! A result carries what the reference Gateway's callers decode
//! (`remediationRequestName`, `remediationRequestNamespace`, `duplicate`)
//! beside our own snake_case fields, and a 207 summary counts duplicates as
//! `deduplicated` (where the reference's readers look) and as `duplicate`.
//!
//! Status codes follow Alertmanager's retry rule (it retries 5xx, never 4xx,
//! and takes any 2xx as delivered): when any alert of a webhook failed in the
//! backend, the whole answer is that failure's 5xx, so the delivery is retried;
//! the alerts that did succeed come back as duplicates.

use std::future::Future;
use std::time::Duration;

use audit_sdk::problem::ProblemType;
use audit_sdk::FieldError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::problem::ApiError;
use crate::domain::intake::{Failure, Outcome};
use crate::domain::signal::InvalidSignal;

/// What became of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// A RemediationRequest was created.
    Created,
    /// An active RemediationRequest absorbed it.
    Duplicate,
    /// It is not a usable signal.
    Rejected,
    /// The backend failed.
    Failed,
    /// A resolved alert, recorded on its active RemediationRequest.
    Resolved,
    /// A resolved alert with no active RemediationRequest: nothing to do.
    Ignored,
}

/// The result of one signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalResult {
    /// Position in the webhook's `alerts` (207 answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// What happened.
    pub status: ResultStatus,
    /// Fingerprint of the target (absent when the signal was rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The RemediationRequest created or joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_request: Option<String>,
    /// The same name, under the reference Gateway's field name.
    #[serde(
        rename = "remediationRequestName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub remediation_request_name: Option<String>,
    /// The namespace of that RemediationRequest.
    #[serde(
        rename = "remediationRequestNamespace",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub remediation_request_namespace: Option<String>,
    /// Whether an active RemediationRequest absorbed the signal (the
    /// reference's boolean beside our `status`).
    #[serde(default)]
    pub duplicate: bool,
    /// Occurrences on that request, this one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence_count: Option<u64>,
    /// Human explanation.
    pub message: String,
}

/// Counts per status of a 207 answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Alerts in the webhook.
    pub total: usize,
    /// Created.
    pub created: usize,
    /// Duplicates.
    pub duplicate: usize,
    /// Duplicates again, under the name the reference's readers use.
    #[serde(default)]
    pub deduplicated: usize,
    /// Rejected.
    pub rejected: usize,
    /// Failed.
    pub failed: usize,
    /// Resolved alerts recorded on their request.
    #[serde(default)]
    pub resolved: usize,
    /// Resolved alerts with nothing to do.
    #[serde(default)]
    pub ignored: usize,
}

/// The 207 body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiStatus {
    /// One result per alert, in order.
    pub results: Vec<SignalResult>,
    /// Counts.
    pub summary: Summary,
}

impl SignalResult {
    /// The result of a processed signal; RemediationRequests live in `namespace`.
    pub fn from_outcome(outcome: &Outcome, namespace: &str) -> Self {
        let result = match outcome {
            Outcome::Created { name, fingerprint } => Self {
                index: None,
                status: ResultStatus::Created,
                fingerprint: Some(fingerprint.to_string()),
                remediation_request: Some(name.clone()),
                remediation_request_name: None,
                remediation_request_namespace: None,
                duplicate: false,
                occurrence_count: Some(1),
                message: format!("RemediationRequest {name} created"),
            },
            Outcome::Duplicate {
                name,
                fingerprint,
                occurrence_count,
            } => Self {
                index: None,
                status: ResultStatus::Duplicate,
                fingerprint: Some(fingerprint.to_string()),
                remediation_request: Some(name.clone()),
                remediation_request_name: None,
                remediation_request_namespace: None,
                duplicate: false,
                occurrence_count: Some(*occurrence_count),
                message: format!(
                    "duplicate of active RemediationRequest {name} (occurrence {occurrence_count})"
                ),
            },
            Outcome::Resolved { name, fingerprint } => Self {
                index: None,
                status: ResultStatus::Resolved,
                fingerprint: Some(fingerprint.to_string()),
                remediation_request: Some(name.clone()),
                remediation_request_name: None,
                remediation_request_namespace: None,
                duplicate: false,
                occurrence_count: None,
                message: format!("resolution recorded on active RemediationRequest {name}"),
            },
            Outcome::Ignored { fingerprint } => Self {
                index: None,
                status: ResultStatus::Ignored,
                fingerprint: fingerprint.as_ref().map(ToString::to_string),
                remediation_request: None,
                remediation_request_name: None,
                remediation_request_namespace: None,
                duplicate: false,
                occurrence_count: None,
                message: "resolved alert with no active RemediationRequest: nothing to do"
                    .to_owned(),
            },
        };
        result.in_namespace(namespace)
    }

    /// Fills the reference's fields from ours.
    fn in_namespace(mut self, namespace: &str) -> Self {
        self.remediation_request_name = self.remediation_request.clone();
        self.remediation_request_namespace = self
            .remediation_request
            .as_ref()
            .map(|_| namespace.to_owned());
        self.duplicate = self.status == ResultStatus::Duplicate;
        self
    }

    fn rejected(e: &InvalidSignal) -> Self {
        Self {
            index: None,
            status: ResultStatus::Rejected,
            fingerprint: None,
            remediation_request: None,
            remediation_request_name: None,
            remediation_request_namespace: None,
            duplicate: false,
            occurrence_count: None,
            message: e.to_string(),
        }
    }

    fn failed(f: &Failure, namespace: &str) -> Self {
        Self {
            index: None,
            status: ResultStatus::Failed,
            fingerprint: Some(f.fingerprint.to_string()),
            remediation_request: f.request.clone(),
            remediation_request_name: None,
            remediation_request_namespace: None,
            duplicate: false,
            occurrence_count: None,
            message: f.error.to_string(),
        }
        .in_namespace(namespace)
    }
}

/// What one signal came to, before it is turned into an answer.
#[derive(Debug)]
pub enum Processed {
    /// Accepted and processed.
    Done(Outcome),
    /// Refused at parsing.
    Rejected(InvalidSignal),
    /// The backend failed.
    Failed(Failure),
}

/// The answer for a request that carried exactly one signal; RemediationRequests
/// live in `namespace`.
pub fn single(processed: Processed, namespace: &str) -> Response {
    match processed {
        Processed::Done(outcome) => {
            let status = match outcome {
                Outcome::Created { .. } => StatusCode::CREATED,
                Outcome::Duplicate { .. } => StatusCode::ACCEPTED,
                Outcome::Resolved { .. } | Outcome::Ignored { .. } => StatusCode::OK,
            };
            (
                status,
                Json(SignalResult::from_outcome(&outcome, namespace)),
            )
                .into_response()
        }
        Processed::Rejected(e) => ApiError::from(e).into_response(),
        Processed::Failed(f) => ApiError::from(f).into_response(),
    }
}

/// The 207 answer for several alerts, or the 5xx of the first backend failure
/// among them (listing every failed alert), so the sender retries.
pub fn multi(all: Vec<Processed>, namespace: &str) -> Response {
    let failed: Vec<(usize, &Failure)> = all
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Processed::Failed(f) => Some((i, f)),
            _ => None,
        })
        .collect();
    if let Some((_, first)) = failed.first() {
        let errors = failed
            .iter()
            .map(|(i, f)| FieldError {
                index: Some(*i),
                field: format!("alerts[{i}]"),
                message: f.error.to_string(),
            })
            .collect();
        return ApiError::from((*first).clone())
            .with_detail(format!(
                "{} of {} alerts could not be processed ({}); retry the whole webhook: \
                 the alerts already processed are answered as duplicates",
                failed.len(),
                all.len(),
                first.error
            ))
            .with_errors(errors)
            .into_response();
    }
    let mut summary = Summary {
        total: all.len(),
        ..Summary::default()
    };
    let results = all
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = match p {
                Processed::Done(o) => SignalResult::from_outcome(o, namespace),
                Processed::Rejected(e) => SignalResult::rejected(e),
                Processed::Failed(f) => SignalResult::failed(f, namespace),
            };
            match r.status {
                ResultStatus::Created => summary.created += 1,
                ResultStatus::Duplicate => {
                    summary.duplicate += 1;
                    summary.deduplicated += 1;
                }
                ResultStatus::Rejected => summary.rejected += 1,
                ResultStatus::Failed => summary.failed += 1,
                ResultStatus::Resolved => summary.resolved += 1,
                ResultStatus::Ignored => summary.ignored += 1,
            }
            r.index = Some(i);
            r
        })
        .collect();
    (
        StatusCode::MULTI_STATUS,
        Json(MultiStatus { results, summary }),
    )
        .into_response()
}

/// Runs `work` on its own task and waits at most `timeout` for it.
///
/// On timeout the answer is 504 but the work is not abandoned: it finishes in
/// the background, so a RemediationRequest is never left half-made with its
/// audit trail cut short; the sender's retry then finds it as a duplicate.
pub async fn bounded<T: Send + 'static>(
    timeout: Duration,
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    let task = tokio::spawn(work);
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "signal processing task failed");
            Err(ApiError::new(
                ProblemType::InternalError,
                "signal processing failed; see Gateway logs",
            ))
        }
        Err(_) => Err(ApiError::new(
            ProblemType::GatewayTimeout,
            format!(
                "processing took longer than {}ms; it continues in the background, and a retry is answered as a duplicate",
                timeout.as_millis()
            ),
        )),
    }
}
