//! JSON over HTTP to `POST /api/v1/audit/events/batch`.

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;

use super::{parse_retry_after, refusal, Ack, SendError, Transport};
use crate::api::{BatchResponse, BATCH_PATH};
use crate::config::AuditConfig;
use crate::event::AuditEvent;
use crate::problem::Problem;

/// The HTTP transport.
#[derive(Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    url: String,
}

impl HttpTransport {
    /// A client for `config.data_storage_url`, trusting `ca_pem` when given.
    pub fn new(config: &AuditConfig, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(
                config
                    .request_timeout
                    .min(std::time::Duration::from_secs(5)),
            )
            .pool_idle_timeout(std::time::Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| format!("ca_file is not a PEM certificate: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(Self {
            client: builder.build().map_err(|e| e.to_string())?,
            url: format!(
                "{}{BATCH_PATH}",
                config.data_storage_url.trim_end_matches('/')
            ),
        })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, events: &[AuditEvent], token: Option<&str>) -> Result<Ack, SendError> {
        let mut request = self.client.post(&self.url).json(events);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = request.send().await.map_err(|e| SendError::Transient {
            reason: describe(&e),
            retry_after: None,
        })?;
        let status = response.status();
        if status.is_success() {
            let body: BatchResponse = response.json().await.map_err(|e| SendError::Transient {
                reason: format!("unreadable answer: {e}"),
                retry_after: None,
            })?;
            return Ok(Ack {
                created: body.created as u64,
                duplicates: body.duplicates as u64,
            });
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        let text = response.text().await.unwrap_or_default();
        let problem = serde_json::from_str::<Problem>(&text).ok();
        let reason = problem
            .as_ref()
            .and_then(|p| p.detail.clone())
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(
            if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
            {
                SendError::Transient {
                    reason: format!("HTTP {status}: {reason}"),
                    retry_after,
                }
            } else if status == StatusCode::UNAUTHORIZED {
                SendError::Unauthorized { reason }
            } else if status == StatusCode::FORBIDDEN {
                SendError::Forbidden { reason }
            } else {
                refusal(
                    status.as_u16(),
                    problem,
                    format!("HTTP {status} from {}: {reason}", self.url),
                    events.len(),
                )
            },
        )
    }

    fn target(&self) -> String {
        self.url.clone()
    }
}

/// reqwest's top-level message hides the cause ("error sending request"); the
/// source chain holds the useful part ("dns error: failed to lookup address").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
