//! Waiting for the cluster to reach a state, with a deadline.
//!
//! Each wait polls the API (or an HTTP endpoint) once a second until its
//! condition holds, and remembers what it saw last: when the deadline passes,
//! the error names the object and its last observed conditions
//! (`Ready=False (ContainersNotReady …); datastorage: waiting CrashLoopBackOff`),
//! which is usually the whole diagnosis. Polling rather than watches: a
//! watch stream adds resource versions, bookmarks and `410 Gone` restarts for
//! no gain at this scale, and a poll is one request a test can answer.
//!
//! The reference platform deployed services before their dependency was
//! usable, so "usable" here is strict: Pod `Ready` *and* a ready endpoint in
//! the Service's EndpointSlice (what kube-proxy routes to), then HTTP.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, Client};
use url::Url;

use super::stack::PodSet;
use crate::progress::seconds;

/// Time between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The label every EndpointSlice carries with its Service's name.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A wait that ran out of time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("timed out after {} waiting for {object} to be {goal}; last observed: {last_observed}", seconds(*.waited))]
pub struct WaitTimeout {
    /// `Deployment kubernaut-system/datastorage`.
    pub object: String,
    /// `Ready with a ready endpoint in its EndpointSlice`.
    pub goal: String,
    pub waited: Duration,
    /// What the last poll saw (conditions, container states, an API error).
    pub last_observed: String,
}

/// What one poll saw.
#[derive(Debug)]
pub enum Seen<T> {
    /// The condition holds.
    Done(T),
    /// Not yet; this is what it looks like.
    Pending(String),
}

/// Polls `probe` until it reports [`Seen::Done`] or `timeout` passes. A probe
/// error (the API briefly unreachable) counts as "not yet" and is reported
/// as the last observation if nothing better follows.
pub async fn poll<T, F, Fut>(
    object: &str,
    goal: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<T, WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Seen<T>>>,
{
    let mut last = "nothing yet (no answer)".to_owned();
    let outcome = tokio::time::timeout(timeout, async {
        loop {
            match probe().await {
                Ok(Seen::Done(value)) => return value,
                Ok(Seen::Pending(state)) => last = state,
                Err(e) => last = format!("error: {e:#}"),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    outcome.map_err(|_| WaitTimeout {
        object: object.to_owned(),
        goal: goal.to_owned(),
        waited: timeout,
        last_observed: last,
    })
}

/// Until the CustomResourceDefinition `name` has `Established=True`.
pub async fn crd_established(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    poll(
        &format!("CustomResourceDefinition {name}"),
        "Established",
        timeout,
        || async {
            let Some(crd) = api.get_opt(name).await? else {
                return Ok(Seen::Pending("not found".into()));
            };
            let conditions: Vec<_> = crd
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .collect();
            if conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                return Ok(Seen::Done(()));
            }
            Ok(Seen::Pending(
                conditions
                    .iter()
                    .map(|c| {
                        condition_text(
                            &c.type_,
                            &c.status,
                            c.reason.as_deref(),
                            c.message.as_deref(),
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
                    .if_empty("no conditions yet"),
            ))
        },
    )
    .await
}

/// Until at least `set.replicas` live (not terminating) Pods of `set` have
/// the Pod condition `condition` (`Ready`, or `Initialized`: every init
/// container — DataStorage's `migrate` — has completed).
pub async fn pods_condition(
    client: &Client,
    set: &PodSet,
    condition: &str,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    let pods = pods_api(client, set);
    let goal = if condition == "Initialized" && !set.init_containers.is_empty() {
        format!(
            "Initialized (init containers {} completed)",
            set.init_containers.join(", ")
        )
    } else {
        condition.to_owned()
    };
    poll(&set.describe(), &goal, timeout, || async {
        let live = live_pods(&pods, set).await?;
        let met = live.iter().filter(|p| has_condition(p, condition)).count();
        if met >= usize::try_from(set.replicas).unwrap_or(0) && !live.is_empty() {
            return Ok(Seen::Done(()));
        }
        Ok(Seen::Pending(format!(
            "{met}/{} Pods {condition}; {}",
            set.replicas,
            describe_pods(&live)
        )))
    })
    .await
}

/// Until `set`'s Pods are Ready *and* the EndpointSlice of its Service has a
/// ready endpoint: a Ready Pod is not yet reachable through the Service until
/// the EndpointSlice controller has published it.
pub async fn serving(client: &Client, set: &PodSet, timeout: Duration) -> Result<(), WaitTimeout> {
    let pods = pods_api(client, set);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &set.namespace);
    let by_service = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={}", set.service));
    let goal = format!(
        "Ready with a ready endpoint in the EndpointSlice of Service {}",
        set.service
    );
    poll(&set.describe(), &goal, timeout, || async {
        let live = live_pods(&pods, set).await?;
        let ready = live.iter().filter(|p| has_condition(p, "Ready")).count();
        let pods_ready = ready >= usize::try_from(set.replicas).unwrap_or(0) && !live.is_empty();
        let slice_list = slices.list(&by_service).await?;
        let endpoints: Vec<_> = slice_list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .collect();
        // The controller always sets `ready`; only an explicit `true` counts.
        let ready_endpoints = endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        if pods_ready && ready_endpoints > 0 {
            return Ok(Seen::Done(()));
        }
        Ok(Seen::Pending(format!(
            "{ready}/{} Pods Ready ({}); EndpointSlice {SERVICE_NAME_LABEL}={}: {} of {} endpoints ready",
            set.replicas,
            describe_pods(&live),
            set.service,
            ready_endpoints,
            endpoints.len()
        )))
    })
    .await
}

/// Until no Pod of `set` exists any more (terminating ones included).
pub async fn pods_gone(
    client: &Client,
    set: &PodSet,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    let pods = pods_api(client, set);
    poll(&set.describe(), "without Pods", timeout, || async {
        let all = pods
            .list(&ListParams::default().labels(&set.selector))
            .await?;
        if all.items.is_empty() {
            return Ok(Seen::Done(()));
        }
        Ok(Seen::Pending(format!(
            "{} Pod(s) left: {}",
            all.items.len(),
            describe_pods(&all.items.iter().collect::<Vec<_>>())
        )))
    })
    .await
}

/// Until none of the Pods with these UIDs exists any more.
pub async fn pods_replaced(
    client: &Client,
    set: &PodSet,
    old: &BTreeSet<String>,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    let pods = pods_api(client, set);
    poll(
        &set.describe(),
        "rid of its previous Pods",
        timeout,
        || async {
            let all = pods
                .list(&ListParams::default().labels(&set.selector))
                .await?;
            let left: Vec<&Pod> = all.items.iter().filter(|p| old.contains(&uid(p))).collect();
            if left.is_empty() {
                return Ok(Seen::Done(()));
            }
            Ok(Seen::Pending(format!(
                "still there: {}",
                describe_pods(&left)
            )))
        },
    )
    .await
}

/// Until a live Pod of `set` that is not one of `old` has its main container
/// started (the startup probe passed). Returns that Pod's name. Readiness is
/// not required: the Gateway's depends on DataStorage, which a scenario may
/// have broken on purpose.
pub async fn container_started(
    client: &Client,
    set: &PodSet,
    old: &BTreeSet<String>,
    timeout: Duration,
) -> Result<String, WaitTimeout> {
    let pods = pods_api(client, set);
    let goal = format!("running a new Pod with container {} started", set.container);
    poll(&set.describe(), &goal, timeout, || async {
        let live = live_pods(&pods, set).await?;
        let started = live.iter().find(|p| {
            !old.contains(&uid(p))
                && p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
                    .any(|c| c.name == set.container && c.started == Some(true))
        });
        Ok(match started {
            Some(p) => Seen::Done(p.metadata.name.clone().unwrap_or_default()),
            None => Seen::Pending(describe_pods(&live)),
        })
    })
    .await
}

/// Until the Deployment's controller has seen `generation` (a patch took effect).
pub async fn generation_observed(
    client: &Client,
    set: &PodSet,
    generation: i64,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &set.namespace);
    let goal = format!("observed at generation {generation}");
    poll(&set.describe(), &goal, timeout, || async {
        let d = api.get(&set.name).await?;
        let observed = d
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
        Ok(if observed >= generation {
            Seen::Done(())
        } else {
            Seen::Pending(format!("observedGeneration {observed}"))
        })
    })
    .await
}

/// Until `GET url` answers 200.
pub async fn http_ok(
    http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    poll(&format!("GET {url}"), "200 OK", timeout, || async {
        let response = http.get(url.clone()).send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::OK {
            return Ok(Seen::Done(()));
        }
        let body = response.text().await.unwrap_or_default();
        Ok(Seen::Pending(format!("{status} {}", body.trim())))
    })
    .await
}

fn pods_api(client: &Client, set: &PodSet) -> Api<Pod> {
    Api::namespaced(client.clone(), &set.namespace)
}

/// Pods of `set` that are not being deleted.
async fn live_pods(pods: &Api<Pod>, set: &PodSet) -> anyhow::Result<Vec<Pod>> {
    let list = pods
        .list(&ListParams::default().labels(&set.selector))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn has_condition(pod: &Pod, condition: &str) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == condition && c.status == "True")
}

fn condition_text(
    type_: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) -> String {
    let mut out = format!("{type_}={status}");
    match (reason, message) {
        (Some(r), Some(m)) if !m.is_empty() => out.push_str(&format!(" ({r}: {m})")),
        (Some(r), _) => out.push_str(&format!(" ({r})")),
        (None, Some(m)) if !m.is_empty() => out.push_str(&format!(" ({m})")),
        _ => {}
    }
    out
}

/// One line per Pod: phase, conditions, and every container that is not
/// simply running (waiting reasons such as `CrashLoopBackOff` or
/// `ErrImageNeverPull`, exit codes, restarts).
pub fn describe_pods(pods: &[impl std::borrow::Borrow<Pod>]) -> String {
    if pods.is_empty() {
        return "no Pods".into();
    }
    pods.iter()
        .map(|p| describe_pod(p.borrow()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `Pod datastorage-7d9-x: phase Pending, Initialized=False (…), Ready=False (…); migrate: waiting CrashLoopBackOff (…), 3 restarts`.
pub fn describe_pod(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let Some(status) = &pod.status else {
        return format!("Pod {name}: no status yet");
    };
    let mut parts = vec![format!(
        "phase {}",
        status.phase.as_deref().unwrap_or("Unknown")
    )];
    if pod.metadata.deletion_timestamp.is_some() {
        parts.push("terminating".into());
    }
    parts.extend(status.conditions.iter().flatten().map(|c| {
        condition_text(
            &c.type_,
            &c.status,
            c.reason.as_deref(),
            c.message.as_deref(),
        )
    }));
    for c in status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
    {
        let state = c.state.as_ref();
        let text = if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            let mut t = format!("waiting {}", w.reason.as_deref().unwrap_or("?"));
            if let Some(m) = w.message.as_deref().filter(|m| !m.is_empty()) {
                t.push_str(&format!(" ({m})"));
            }
            // Why the previous instance ended (a crash loop's real cause).
            if let Some(last) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                t.push_str(&format!(
                    ", last exit {} ({})",
                    last.exit_code,
                    last.reason.as_deref().unwrap_or("?")
                ));
            }
            t
        } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            format!(
                "terminated {} (exit {})",
                t.reason.as_deref().unwrap_or("?"),
                t.exit_code
            )
        } else if c.ready {
            continue;
        } else {
            "running, not ready".into()
        };
        let restarts = if c.restart_count > 0 {
            format!(", {} restarts", c.restart_count)
        } else {
            String::new()
        };
        parts.push(format!("{}: {text}{restarts}", c.name));
    }
    format!("Pod {name}: {}", parts.join(", "))
}

trait IfEmpty {
    fn if_empty(self, default: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, default: &str) -> String {
        if self.is_empty() {
            default.to_owned()
        } else {
            self
        }
    }
}
