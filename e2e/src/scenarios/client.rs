//! What the scenarios do to the stack over HTTP: send alerts to the Gateway as
//! the signal sender, read audit trails from DataStorage as the reader, and
//! wait for an observable outcome (events stored, `/readyz` answering) rather
//! than for a fixed time.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use audit_sdk::api::{EventPage, VerifyChainRequest, VerifyChainResponse};
use audit_sdk::StoredEvent;
use chrono::{DateTime, Utc};
use gateway::api::response::SignalResult;
use serde_json::{json, Value};

use crate::platform::{Endpoints, Platform, Tokens};

/// How often an awaited outcome is checked.
const POLL: Duration = Duration::from_millis(200);

/// An HTTP client bound to one stack's endpoints and tokens.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Shared connection pool.
    pub http: reqwest::Client,
    /// Where the services are.
    pub endpoints: Endpoints,
    /// The test callers.
    pub tokens: Tokens,
}

/// How one signal was answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status (0: no answer, the connection failed).
    pub status: u16,
    /// The body, when it was a signal result.
    pub result: Option<SignalResult>,
}

impl Answer {
    /// The RemediationRequest created or joined, when the answer was 2xx.
    pub fn request(&self) -> Option<&str> {
        (200..300)
            .contains(&self.status)
            .then(|| self.result.as_ref()?.remediation_request.as_deref())
            .flatten()
    }
}

/// An AlertManager webhook (version 4) with one firing alert about `deployment`.
pub fn alert(deployment: &str) -> Value {
    json!({
        "version": "4",
        "status": "firing",
        "receiver": "gateway",
        "groupKey": format!("e2e/{deployment}"),
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "E2EHighMemory", "severity": "warning",
                       "namespace": "e2e", "deployment": deployment},
            "annotations": {"summary": format!("{deployment} is close to its memory limit")},
            "startsAt": Utc::now().to_rfc3339(),
        }]
    })
}

/// A name unique to this run, for alert targets (so scenarios never
/// deduplicate against each other or an earlier run).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with
/// `what` and the last state `check` reported.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => state,
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{what}: not reached within {timeout:?}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

impl Stack {
    /// A client for `platform`.
    pub fn of(platform: &dyn Platform) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a TLS-less client builds"),
            endpoints: platform.endpoints().clone(),
            tokens: platform.tokens().clone(),
        }
    }

    /// A DataStorage API URL.
    pub fn data_storage(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.endpoints
                .data_storage_api
                .as_str()
                .trim_end_matches('/'),
            path
        )
    }

    /// A Gateway API URL.
    pub fn gateway(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.endpoints.gateway_api.as_str().trim_end_matches('/'),
            path
        )
    }

    /// Posts one webhook as the signal sender.
    pub async fn send(&self, webhook: &Value) -> Answer {
        let sent = self
            .http
            .post(self.gateway("/api/v1/signals/prometheus"))
            .bearer_auth(&self.tokens.signal_sender)
            .json(webhook)
            .send()
            .await;
        match sent {
            Err(_) => Answer {
                status: 0,
                result: None,
            },
            Ok(resp) => {
                let status = resp.status().as_u16();
                let result = resp.json::<SignalResult>().await.ok();
                Answer { status, result }
            }
        }
    }

    /// Posts one alert about `deployment` and expects a new or joined request.
    pub async fn send_expecting(
        &self,
        deployment: &str,
        status: u16,
    ) -> anyhow::Result<SignalResult> {
        let answer = self.send(&alert(deployment)).await;
        if answer.status != status {
            bail!(
                "alert about {deployment}: expected {status}, got {} {:?}",
                answer.status,
                answer.result
            );
        }
        answer
            .result
            .context("a signal answer without a signal result body")
    }

    /// The start of a scenario's time window, on the servers' clock: the
    /// `Date` of a DataStorage answer, minus `margin`. The host's clock may
    /// drift from the cluster's (a Docker Desktop VM after the laptop slept),
    /// and a window taken from it could miss every trail.
    pub async fn window_start(&self, margin: chrono::Duration) -> anyhow::Result<DateTime<Utc>> {
        let resp = self
            .http
            .get(self.data_storage("/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .context("asking DataStorage for its clock")?;
        let date = resp
            .headers()
            .get(http::header::DATE)
            .and_then(|d| d.to_str().ok())
            .context("DataStorage's answer has no Date header")?;
        let now = DateTime::parse_from_rfc2822(date)
            .with_context(|| format!("DataStorage's Date header {date:?}"))?;
        Ok(now.with_timezone(&Utc) - margin)
    }

    /// `GET /readyz` on a health URL: the status, 0 when nothing answers.
    pub async fn readyz(&self, health: &url::Url) -> u16 {
        let url = format!("{}/readyz", health.as_str().trim_end_matches('/'));
        match self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(resp) => resp.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Waits until `/readyz` on `health` answers 200.
    pub async fn wait_ready(
        &self,
        what: &str,
        health: &url::Url,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        eventually(&format!("{what} /readyz 200"), timeout, || async {
            let status = self.readyz(health).await;
            Ok(if status == 200 {
                Ok(())
            } else {
                Err(format!("status {status}"))
            })
        })
        .await
    }

    /// One page of a query as the reader.
    async fn page(&self, query: &[(&str, String)]) -> anyhow::Result<EventPage> {
        let resp = self
            .http
            .get(self.data_storage("/api/v1/audit/events"))
            .bearer_auth(&self.tokens.reader)
            .query(query)
            .send()
            .await?;
        let status = resp.status();
        if status != 200 {
            bail!(
                "query answered {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(resp.json().await?)
    }

    /// Every event matching `filters`, following the cursor, oldest first.
    pub async fn events(&self, filters: &[(&str, String)]) -> anyhow::Result<Vec<StoredEvent>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query: Vec<(&str, String)> = filters.to_vec();
            query.push(("limit", "1000".into()));
            if let Some(c) = cursor.take() {
                query.push(("cursor", c));
            }
            let page = self.page(&query).await?;
            all.extend(page.data);
            match page.pagination.next_cursor {
                Some(next) if page.pagination.has_more => cursor = Some(next),
                _ => break,
            }
        }
        all.sort_by_key(|e| (e.event.correlation_id.clone(), e.chain_seq));
        Ok(all)
    }

    /// The audit trail of one correlation id in chain order.
    pub async fn trail(&self, correlation_id: &str) -> anyhow::Result<Vec<StoredEvent>> {
        self.events(&[("correlation_id", correlation_id.to_owned())])
            .await
    }

    /// The event types of a trail once it has at least `count` events.
    pub async fn trail_of_at_least(
        &self,
        correlation_id: &str,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<StoredEvent>> {
        eventually(
            &format!("{count} audit events for {correlation_id}"),
            timeout,
            || async {
                let trail = self.trail(correlation_id).await?;
                Ok(if trail.len() >= count {
                    Ok(trail)
                } else {
                    Err(format!("{:?}", types(&trail)))
                })
            },
        )
        .await
    }

    /// Gateway events stored since `since`, grouped by correlation id.
    pub async fn gateway_trails_since(
        &self,
        since: DateTime<Utc>,
    ) -> anyhow::Result<HashMap<String, Vec<StoredEvent>>> {
        let events = self
            .events(&[
                ("event_category", gateway::audit::CATEGORY.into()),
                ("since", since.to_rfc3339()),
            ])
            .await?;
        let mut trails: HashMap<String, Vec<StoredEvent>> = HashMap::new();
        for e in events {
            trails
                .entry(e.event.correlation_id.clone())
                .or_default()
                .push(e);
        }
        Ok(trails)
    }

    /// Waits until every one of `requests` has exactly the trail of a created
    /// request (`signal.received`, `crd.created`), none missing, none twice.
    pub async fn expect_created_trails(
        &self,
        since: DateTime<Utc>,
        requests: &[String],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let expected = [RECEIVED, CREATED];
        let trails = eventually(
            &format!("audit trails of {} requests", requests.len()),
            timeout,
            || async {
                let trails = self.gateway_trails_since(since).await?;
                let complete = requests
                    .iter()
                    .filter(|r| trails.get(*r).is_some_and(|t| t.len() >= expected.len()))
                    .count();
                Ok(if complete == requests.len() {
                    Ok(trails)
                } else {
                    Err(format!("{complete} of {} complete", requests.len()))
                })
            },
        )
        .await?;
        for request in requests {
            let got = types(&trails[request]);
            if got != expected {
                bail!("audit trail of {request}: expected {expected:?}, got {got:?}");
            }
        }
        Ok(())
    }

    /// `POST /api/v1/audit/verify-chain` as the reader.
    pub async fn verify(&self, correlation_id: &str) -> anyhow::Result<VerifyChainResponse> {
        let resp = self
            .http
            .post(self.data_storage("/api/v1/audit/verify-chain"))
            .bearer_auth(&self.tokens.reader)
            .json(&VerifyChainRequest {
                correlation_id: correlation_id.to_owned(),
            })
            .send()
            .await?;
        let status = resp.status();
        if status != 200 {
            bail!(
                "verify-chain answered {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(resp.json().await?)
    }
}

pub use gateway::audit::event_types::{
    CRD_CREATED as CREATED, SIGNAL_DEDUPLICATED as DEDUPLICATED, SIGNAL_RECEIVED as RECEIVED,
};

/// The event types of a trail, in order.
pub fn types(trail: &[StoredEvent]) -> Vec<&str> {
    trail.iter().map(|e| e.event.event_type.as_str()).collect()
}
