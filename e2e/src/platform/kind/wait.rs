//! Waiting for the cluster to reach a state, with a deadline.
//!
//! The Kubernetes-object waits are driven by kube-rs watches
//! ([`kube::runtime::watcher`]) on the watched resource, with the same label
//! or field selector a one-off `GET` would use: the watcher lists the objects
//! once (the initial list counts as the first event), then follows `WATCH`
//! events from that list's resource version. Every event updates a local
//! snapshot of the matching objects and the wait's condition is re-evaluated
//! on it; a wait over two resources (Pods *and* their Service's
//! EndpointSlices) merges both streams and re-evaluates on either. A watch
//! error (the API briefly down, a `410 Gone` that forces a re-list) does not
//! end the wait: the watcher restarts itself after an exponential backoff
//! ([`WatchStreamExt::default_backoff`]) and the error is remembered as the
//! last observation. Only HTTP waits ([`http_ok`]) poll, once a second, since
//! there is nothing to watch.
//!
//! Every wait runs under one `tokio::time::timeout` and remembers what it saw
//! last: when the deadline passes, the error names the object and its last
//! observed conditions
//! (`Ready=False (ContainersNotReady …); datastorage: waiting CrashLoopBackOff`),
//! which is usually the whole diagnosis.
//!
//! The reference platform deployed services before their dependency was
//! usable, so "usable" here is strict: Pod `Ready` *and* a ready endpoint in
//! the Service's EndpointSlice (what kube-proxy routes to), then HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use url::Url;

use super::stack::{PodSet, WorkloadKind};
use crate::progress::seconds;

/// Time between two polls of an HTTP wait.
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
    /// What the last event or poll showed (conditions, container states, an
    /// API error).
    pub last_observed: String,
}

/// What one observation showed.
#[derive(Debug)]
pub enum Seen<T> {
    /// The condition holds.
    Done(T),
    /// Not yet; this is what it looks like.
    Pending(String),
}

/// The starting value of the last observation.
const NOTHING_YET: &str = "nothing yet (no answer)";

/// Polls `probe` every [`POLL_INTERVAL`] until it reports [`Seen::Done`] or
/// `timeout` passes. For what has no watch (HTTP). A probe error counts as
/// "not yet" and is reported as the last observation if nothing better
/// follows.
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
    let mut last = NOTHING_YET.to_owned();
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
    outcome.map_err(|_| timed_out(object, goal, timeout, last))
}

/// Follows `events` (watch streams) until `observe` reports [`Seen::Done`]
/// or `timeout` passes. `observe` sees every event and answers `None` when it
/// has nothing to evaluate yet (an initial list still coming in). A watch
/// error does not end the wait — the stream retries with backoff — and is
/// kept as the last observation until an event replaces it.
async fn watch_until<E, T>(
    object: &str,
    goal: &str,
    timeout: Duration,
    events: impl Stream<Item = watcher::Result<E>>,
    mut observe: impl FnMut(E) -> Option<Seen<T>>,
) -> Result<T, WaitTimeout> {
    let mut last = NOTHING_YET.to_owned();
    let outcome = tokio::time::timeout(timeout, async {
        let mut events = pin!(events);
        while let Some(event) = events.next().await {
            match event.map(&mut observe) {
                Ok(Some(Seen::Done(value))) => return value,
                Ok(Some(Seen::Pending(state))) => last = state,
                Ok(None) => {}
                Err(e) => last = format!("error: {e}"),
            }
        }
        // A watcher restarts itself and never ends; should one, only the
        // deadline is left.
        std::future::pending().await
    })
    .await;
    outcome.map_err(|_| timed_out(object, goal, timeout, last))
}

fn timed_out(object: &str, goal: &str, waited: Duration, last_observed: String) -> WaitTimeout {
    WaitTimeout {
        object: object.to_owned(),
        goal: goal.to_owned(),
        waited,
        last_observed,
    }
}

/// A watcher on `api` with `config`, restarting after errors with kube's
/// default backoff.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config).default_backoff()
}

/// The objects a watch shows: the last complete list plus every event since.
struct Snapshot<K> {
    /// An initial list has completed.
    listed: bool,
    objects: BTreeMap<String, K>,
    /// A (re-)list in progress; replaces `objects` when it completes.
    listing: Option<BTreeMap<String, K>>,
}

impl<K> Default for Snapshot<K> {
    fn default() -> Self {
        Snapshot {
            listed: false,
            objects: BTreeMap::new(),
            listing: None,
        }
    }
}

impl<K: Resource> Snapshot<K> {
    /// Applies one watch event; `true` when the snapshot is complete and may
    /// have changed, i.e. worth re-evaluating.
    fn apply(&mut self, event: Event<K>) -> bool {
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                self.listing
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&object), object);
                false
            }
            Event::InitDone => {
                self.objects = self.listing.take().unwrap_or_default();
                self.listed = true;
                true
            }
            Event::Apply(object) => {
                self.objects.insert(key(&object), object);
                self.listed
            }
            Event::Delete(object) => {
                self.objects.remove(&key(&object));
                self.listed
            }
        }
    }

    fn objects(&self) -> Vec<&K> {
        self.objects.values().collect()
    }
}

fn key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Watches the objects of one resource and evaluates `probe` on all of them
/// after the initial list and after every event.
async fn watch_objects<K, T>(
    object: &str,
    goal: &str,
    timeout: Duration,
    api: Api<K>,
    config: watcher::Config,
    mut probe: impl FnMut(&[&K]) -> Seen<T>,
) -> Result<T, WaitTimeout>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut seen = Snapshot::default();
    watch_until(object, goal, timeout, watch(api, config), |event| {
        seen.apply(event).then(|| probe(&seen.objects()))
    })
    .await
}

/// A watch config selecting the one object called `name`.
fn named(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// A watch config selecting `set`'s Pods.
fn pods_of(set: &PodSet) -> watcher::Config {
    watcher::Config::default().labels(&set.selector)
}

/// Until the CustomResourceDefinition `name` has `Established=True`.
pub async fn crd_established(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    watch_objects(
        &format!("CustomResourceDefinition {name}"),
        "Established",
        timeout,
        api,
        named(name),
        crd_state,
    )
    .await
}

fn crd_state(crds: &[&CustomResourceDefinition]) -> Seen<()> {
    let Some(crd) = crds.first() else {
        return Seen::Pending("not found".into());
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
        return Seen::Done(());
    }
    Seen::Pending(
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
    )
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
    let goal = if condition == "Initialized" && !set.init_containers.is_empty() {
        format!(
            "Initialized (init containers {} completed)",
            set.init_containers.join(", ")
        )
    } else {
        condition.to_owned()
    };
    watch_objects(
        &set.describe(),
        &goal,
        timeout,
        pods_api(client, set),
        pods_of(set),
        |pods| {
            let live = live(pods);
            let met = live.iter().filter(|p| has_condition(p, condition)).count();
            if enough(set, met, &live) {
                return Seen::Done(());
            }
            Seen::Pending(format!(
                "{met}/{} Pods {condition}; {}",
                set.replicas,
                describe_pods(&live)
            ))
        },
    )
    .await
}

/// An event of one of the two watches [`serving`] merges.
enum Serving {
    Pod(Box<Event<Pod>>),
    Slice(Box<Event<EndpointSlice>>),
}

/// Until `set`'s Pods are Ready *and* the EndpointSlice of its Service has a
/// ready endpoint: a Ready Pod is not yet reachable through the Service until
/// the EndpointSlice controller has published it. Watches both and
/// re-evaluates on an event of either.
pub async fn serving(client: &Client, set: &PodSet, timeout: Duration) -> Result<(), WaitTimeout> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &set.namespace);
    let by_service =
        watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={}", set.service));
    let goal = format!(
        "Ready with a ready endpoint in the EndpointSlice of Service {}",
        set.service
    );
    let events = stream::select(
        watch(pods_api(client, set), pods_of(set)).map_ok(|e| Serving::Pod(Box::new(e))),
        watch(slices, by_service).map_ok(|e| Serving::Slice(Box::new(e))),
    );
    let mut pods = Snapshot::default();
    let mut slices = Snapshot::default();
    watch_until(&set.describe(), &goal, timeout, events, |event| {
        let changed = match event {
            Serving::Pod(e) => pods.apply(*e),
            Serving::Slice(e) => slices.apply(*e),
        };
        (changed && pods.listed && slices.listed)
            .then(|| serving_state(set, &pods.objects(), &slices.objects()))
    })
    .await
}

fn serving_state(set: &PodSet, pods: &[&Pod], slices: &[&EndpointSlice]) -> Seen<()> {
    let live = live(pods);
    let ready = live.iter().filter(|p| has_condition(p, "Ready")).count();
    let pods_ready = enough(set, ready, &live);
    let endpoints: Vec<_> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .collect();
    // The controller always sets `ready`; only an explicit `true` counts.
    let ready_endpoints = endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .count();
    if pods_ready && ready_endpoints > 0 {
        return Seen::Done(());
    }
    Seen::Pending(format!(
        "{ready}/{} Pods Ready ({}); EndpointSlice {SERVICE_NAME_LABEL}={}: {} of {} endpoints ready",
        set.replicas,
        describe_pods(&live),
        set.service,
        ready_endpoints,
        endpoints.len()
    ))
}

/// Until no Pod of `set` exists any more (terminating ones included).
pub async fn pods_gone(
    client: &Client,
    set: &PodSet,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    watch_objects(
        &set.describe(),
        "without Pods",
        timeout,
        pods_api(client, set),
        pods_of(set),
        |pods| {
            if pods.is_empty() {
                return Seen::Done(());
            }
            Seen::Pending(format!(
                "{} Pod(s) left: {}",
                pods.len(),
                describe_pods(pods)
            ))
        },
    )
    .await
}

/// Until none of the Pods with these UIDs exists any more.
pub async fn pods_replaced(
    client: &Client,
    set: &PodSet,
    old: &BTreeSet<String>,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    watch_objects(
        &set.describe(),
        "rid of its previous Pods",
        timeout,
        pods_api(client, set),
        pods_of(set),
        |pods| {
            let left: Vec<&Pod> = pods
                .iter()
                .copied()
                .filter(|p| old.contains(&uid(p)))
                .collect();
            if left.is_empty() {
                return Seen::Done(());
            }
            Seen::Pending(format!("still there: {}", describe_pods(&left)))
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
    let goal = format!("running a new Pod with container {} started", set.container);
    watch_objects(
        &set.describe(),
        &goal,
        timeout,
        pods_api(client, set),
        pods_of(set),
        |pods| {
            let live = live(pods);
            let started = live.iter().find(|p| {
                !old.contains(&uid(p))
                    && p.status
                        .iter()
                        .flat_map(|s| s.container_statuses.iter().flatten())
                        .any(|c| c.name == set.container && c.started == Some(true))
            });
            match started {
                Some(p) => Seen::Done(p.metadata.name.clone().unwrap_or_default()),
                None => Seen::Pending(describe_pods(&live)),
            }
        },
    )
    .await
}

/// Until the Deployment's controller has seen `generation` (a patch took effect).
pub async fn generation_observed(
    client: &Client,
    set: &PodSet,
    generation: i64,
    timeout: Duration,
) -> Result<(), WaitTimeout> {
    let goal = format!("observed at generation {generation}");
    let check = |observed: Option<i64>| {
        let observed = observed.unwrap_or(0);
        if observed >= generation {
            Seen::Done(())
        } else {
            Seen::Pending(format!("observedGeneration {observed}"))
        }
    };
    match set.kind {
        WorkloadKind::Deployment => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), &set.namespace);
            watch_objects(
                &set.describe(),
                &goal,
                timeout,
                api,
                named(&set.name),
                |d| match d.first() {
                    None => Seen::Pending("not found".into()),
                    Some(d) => check(d.status.as_ref().and_then(|s| s.observed_generation)),
                },
            )
            .await
        }
        WorkloadKind::StatefulSet => {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), &set.namespace);
            watch_objects(
                &set.describe(),
                &goal,
                timeout,
                api,
                named(&set.name),
                |s| match s.first() {
                    None => Seen::Pending("not found".into()),
                    Some(s) => check(s.status.as_ref().and_then(|s| s.observed_generation)),
                },
            )
            .await
        }
    }
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

/// The Pods that are not being deleted.
fn live<'a>(pods: &[&'a Pod]) -> Vec<&'a Pod> {
    pods.iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// `met` of the `live` Pods is enough for `set` (and there is at least one).
fn enough(set: &PodSet, met: usize, live: &[&Pod]) -> bool {
    met >= usize::try_from(set.replicas).unwrap_or(0) && !live.is_empty()
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
