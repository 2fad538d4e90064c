//! A fake Kubernetes API server for the workspace's tests.
//!
//! No API server can run on the machines this workspace is tested on (no
//! Docker, no kind, no control-plane binaries), so the Gateway's backend, the
//! auth crate and the e2e waits are tested against this: a real HTTP server on
//! loopback, so the production `kube::Client` stack (its timeouts, retry
//! layer, JSON and watch decoding) runs unchanged against it.
//!
//! # What it models (the semantics the workspace's code depends on)
//!
//! - `uid` assigned on create and stable across update, replace and patch;
//!   `resourceVersion` from one global revision counter, bumped on every write
//!   that changes an object (a no-op write keeps it, as the real server does);
//! - create: 409 `AlreadyExists`; update/patch with a stale `resourceVersion`
//!   (in the body or a merge patch's `metadata`): 409 `Conflict`; delete with
//!   `uid` / `resourceVersion` preconditions: 409 `Conflict`; 404 `NotFound`;
//! - label selectors (`=`, `==`, `!=`, exists, `!`, `in`, `notin`) and the
//!   `metadata.name` / `metadata.namespace` field selectors; `limit` + `continue`;
//! - the status subresource: writes to the main resource ignore `status`, writes
//!   to `/status` ignore everything else (for custom resources and the built-in
//!   kinds that have one; see [`path::Resource::has_status_subresource`]);
//! - patches: JSON merge patch, JSON patch, server-side apply
//!   (`application/apply-patch+yaml`, `fieldManager` required), strategic
//!   merge on built-ins; a strategic-merge patch on a custom resource is 415,
//!   as the real server answers;
//! - watches: `ADDED`/`MODIFIED`/`DELETED` from a resume `resourceVersion`,
//!   `BOOKMARK`s when asked (`allowWatchBookmarks`), `timeoutSeconds`, and an
//!   `ERROR` event with 410 `Expired` when the resume version was compacted
//!   ([`FakeApiServer::compact`]);
//! - injected faults ([`Fault`]): a status (429/503 with `Retry-After`, 403, …),
//!   extra latency before serving or before answering, or a broken
//!   connection, for matching calls, plus a latency for every call, counted
//!   from the request's arrival (served halfway, answered at its end) and held
//!   to the microsecond up to 10 ms
//!   (see `latency.rs`: tokio's timer would add up to a millisecond);
//! - a log of every call (verb, path, query, headers, content type, answer).
//! - TCP_NODELAY on every connection, as Go's `net/http` sets it.
//!
//! # What it does not model
//!
//! Authentication and authorization of the callers themselves (every caller is
//! allowed; TokenReview/SubjectAccessReview answers are scripted with
//! [`FakeApiServer::respond_to_create`]), admission (webhooks, quotas,
//! LimitRanges), OpenAPI validation and schema pruning (the CRD's schema is
//! checked by its own tests), defaulting, field ownership of server-side apply
//! (an apply is merged like a merge patch and never removes fields a previous
//! apply set; conflicts between managers are not detected); strategic merge on
//! built-ins is applied as a JSON merge patch (no list merge keys, no
//! `$patch`/`$setElementOrder` directives: a list in the patch replaces the
//! stored one); `generateName`; `dryRun` (a dry-run write is applied);
//! finalizers and graceful deletion (a delete removes the object at once),
//! garbage collection of owned objects and `propagationPolicy`;
//! `deletecollection`; subresources other than `status` and scripted creates
//! (`scale`, `log`, `eviction`, … are 404); field selectors other than
//! `metadata.name` / `metadata.namespace` with `=`/`==`/`!=` (refused with
//! 400, never matched as nothing); watch events for objects that stop
//! matching a label selector; `resourceVersionMatch`, `resourceVersion=0`
//! cache reads and consistent snapshots (every list is a fresh read; a
//! `continue` token is an offset into the current list, not a snapshot);
//! namespaces (they need not exist, and a terminating one refuses nothing);
//! API priority and fairness (a 429 only when injected); API discovery beyond
//! 404 for hidden resources; HTTP/2 and TLS.

pub mod path;
pub mod selector;
pub mod store;

mod handler;
mod latency;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::serve::ListenerExt;
use serde_json::Value;

use crate::path::parse;
use crate::selector::Selector;
use crate::store::{Key, Store};

/// Scripted answer of a `create` on a resource (TokenReviews, SubjectAccessReviews):
/// the request body in, HTTP status and JSON body out.
pub type Responder = Arc<dyn Fn(&Value) -> (u16, Value) + Send + Sync>;

/// One call the fake API server answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verb: &'static str,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Query string (without `?`).
    pub query: String,
    /// Resource plural (`""` when the path is not a resource path).
    pub resource: String,
    /// `status` when the status subresource was addressed.
    pub subresource: Option<String>,
    /// Request headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The answer's HTTP status (0: no answer, [`FaultAction::Disconnect`]).
    pub status: u16,
}

impl Call {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What an injected fault does to a matching call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer this status (a Kubernetes `Status` body) with an optional
    /// `Retry-After` in seconds, without touching the store.
    Fail {
        /// HTTP status (429, 503, 403, 500, …).
        code: u16,
        /// `Retry-After` seconds.
        retry_after: Option<u64>,
    },
    /// Hold the call this long before serving it normally.
    Delay(Duration),
    /// Serve the call (its write is applied at once), then hold the answer
    /// this long: a client that times out never learns that it succeeded.
    DelayAnswer(Duration),
    /// Do not serve the call (nothing is applied) and break the connection
    /// before an answer body arrives, as a dropped connection does. Logged
    /// with status 0.
    Disconnect,
}

/// A fault for the calls it matches (every `None` matches anything).
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only this verb.
    pub verb: Option<&'static str>,
    /// Only this resource plural.
    pub resource: Option<String>,
    /// Only calls carrying this header (lower-case name) with this value.
    pub header: Option<(String, String)>,
    /// What to do.
    pub action: FaultAction,
    /// How many matching calls it applies to.
    pub times: usize,
}

impl Fault {
    /// `action` for the next `times` calls of any kind.
    pub fn new(action: FaultAction, times: usize) -> Self {
        Self {
            verb: None,
            resource: None,
            header: None,
            action,
            times,
        }
    }

    /// Only calls with this verb.
    pub fn verb(mut self, verb: &'static str) -> Self {
        self.verb = Some(verb);
        self
    }

    /// Only calls on this resource plural.
    pub fn resource(mut self, plural: &str) -> Self {
        self.resource = Some(plural.to_owned());
        self
    }

    /// Only calls carrying header `name: value`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.header = Some((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    fn matches(&self, verb: &str, resource: &str, headers: &[(String, String)]) -> bool {
        self.times > 0
            && self.verb.is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource)
            && self
                .header
                .as_ref()
                .is_none_or(|h| headers.iter().any(|(n, v)| n == &h.0 && v == &h.1))
    }
}

/// State shared by the server task and the test's handle.
struct Shared {
    store: Mutex<Store>,
    latency: Mutex<Duration>,
    bookmark_interval: Duration,
    faults: Mutex<Vec<Fault>>,
    calls: Mutex<Vec<Call>>,
    /// Bumped after every logged call, for [`FakeApiServer::wait_for_call`].
    logged: tokio::sync::watch::Sender<usize>,
    responders: Mutex<HashMap<String, Responder>>,
    hidden: Mutex<HashSet<String>>,
    /// Bumped to end every open watch.
    disconnect: tokio::sync::watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The fault for this call, consumed.
    fn take_fault(
        &self,
        verb: &str,
        resource: &str,
        headers: &[(String, String)],
    ) -> Option<FaultAction> {
        let mut faults = lock(&self.faults);
        let fault = faults
            .iter_mut()
            .find(|f| f.matches(verb, resource, headers))?;
        fault.times -= 1;
        Some(fault.action.clone())
    }
}

/// Builder of a [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct Builder {
    latency: Duration,
    bookmark_interval: Duration,
    history: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            bookmark_interval: Duration::from_secs(1),
            history: 10_000,
        }
    }
}

impl Builder {
    /// Every call's time from arrival to answer (not of events of an open
    /// watch): served after half of it, as a write reaches a real server's
    /// store partway through the round trip, and answered at the end of it,
    /// so the fake's own work is part of the latency, not added to it.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// How often an open watch that asked for bookmarks gets one.
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// Changes kept for resuming watches (older ones: 410 Gone).
    pub fn history(mut self, changes: usize) -> Self {
        self.history = changes;
        self
    }

    /// Binds `127.0.0.1:0` and serves.
    pub async fn start(self) -> FakeApiServer {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(self.history)),
            latency: Mutex::new(self.latency),
            bookmark_interval: self.bookmark_interval,
            faults: Mutex::default(),
            calls: Mutex::default(),
            logged: tokio::sync::watch::channel(0).0,
            responders: Mutex::default(),
            hidden: Mutex::default(),
            disconnect: tokio::sync::watch::channel(0).0,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        // TCP_NODELAY on every connection, as the real API server (Go's
        // net/http) has: a watch's small event writes and a response's head and
        // body must not wait for the peer's delayed ACK (Nagle), which would
        // show as 40 ms stalls that a real server never has.
        let listener = listener.tap_io(|tcp| {
            // A socket option on a just-accepted loopback socket does not fail
            // in practice; if it does, the connection is only slower.
            let _ = tcp.set_nodelay(true);
        });
        let app = handler::router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { url, shared, task }
    }
}

/// A running fake API server; stops when dropped.
pub struct FakeApiServer {
    url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("url", &self.url)
            .finish()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key_of(path: &str) -> Key {
    let t = parse(path).unwrap_or_else(|| panic!("{path:?} is not a resource path"));
    let name = t.name.unwrap_or_else(|| panic!("{path:?} names no object"));
    (t.resource, t.namespace.unwrap_or_default(), name)
}

impl FakeApiServer {
    /// A builder with no latency, 1 s bookmarks and 10 000 changes of history.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts one with the defaults.
    pub async fn start() -> Self {
        Builder::default().start().await
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client configuration for this server, as `kube::Config::infer` would
    /// give one (kube's defaults: its retry layer on, no read timeout).
    pub fn config(&self) -> kube::Config {
        kube::Config::new(self.url.parse().expect("loopback URL"))
    }

    /// A client with the production stack over [`Self::config`].
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("client for a loopback URL")
    }

    /// Sets the latency of every call from now on.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.shared.latency) = latency;
    }

    /// Adds a fault (the first matching fault applies to a call).
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Scripts the answer to `create` on `plural` (nothing is stored);
    /// `plural/subresource` (`serviceaccounts/token`) scripts the create on
    /// that subresource of any object, the body carrying the object's name in
    /// `metadata.name` when it names none.
    pub fn respond_to_create(
        &self,
        plural: &str,
        respond: impl Fn(&Value) -> (u16, Value) + Send + Sync + 'static,
    ) {
        lock(&self.shared.responders).insert(plural.to_owned(), Arc::new(respond));
    }

    /// Makes `plural` unknown (404 for every path of it), as a CRD not installed.
    pub fn hide(&self, plural: &str) {
        lock(&self.shared.hidden).insert(plural.to_owned());
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// Resolves once a logged call matches `matching` (calls already
    /// logged count): a test's readiness signal, e.g. "the watch is open".
    /// A watch is logged when its stream starts.
    pub async fn wait_for_call(&self, matching: impl Fn(&Call) -> bool) {
        let mut logged = self.shared.logged.subscribe();
        loop {
            if lock(&self.shared.calls).iter().any(&matching) {
                return;
            }
            // The sender lives in `self.shared`: `changed` cannot fail while `self` does.
            let _ = logged.changed().await;
        }
    }

    /// Forgets the calls so far.
    pub fn reset_calls(&self) {
        lock(&self.shared.calls).clear();
    }

    /// Calls so far by verb (`create`, `get`, …) on `plural` (`None`: any resource).
    pub fn counts(&self, plural: Option<&str>) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for call in lock(&self.shared.calls).iter() {
            if plural.is_none_or(|p| p == call.resource) {
                *counts.entry(call.verb).or_default() += 1;
            }
        }
        counts
    }

    /// Calls so far with `verb` on `plural` (`None`: any resource).
    pub fn count(&self, verb: &str, plural: Option<&str>) -> usize {
        self.counts(plural).get(verb).copied().unwrap_or(0)
    }

    /// Stores `object` at `path` (an object path) as another client would:
    /// created when absent, replaced (status included) when present. Not logged as a call.
    pub fn put(&self, path: &str, object: Value) -> Value {
        let key = key_of(path);
        let mut store = lock(&self.shared.store);
        if store.get(&key).is_some() {
            store
                .update(&key, object, None)
                .expect("unconditional update")
        } else {
            store
                .create(key, object)
                .expect("create of an absent object")
        }
    }

    /// The stored object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        lock(&self.shared.store).get(&key_of(path)).cloned()
    }

    /// Objects of the collection at `path` matching `label_selector`.
    pub fn list(&self, path: &str, label_selector: &str) -> Vec<Value> {
        let t = parse(path).unwrap_or_else(|| panic!("{path:?} is not a resource path"));
        let labels = Selector::parse(label_selector).expect("valid selector");
        lock(&self.shared.store).list(
            &t.resource,
            t.namespace.as_deref(),
            &labels,
            &Selector::default(),
        )
    }

    /// Another controller's write: `change` edits the stored object (status
    /// included), which is stored with a new resourceVersion. Not logged as a call.
    pub fn modify(&self, path: &str, change: impl FnOnce(&mut Value)) -> Value {
        let key = key_of(path);
        let mut store = lock(&self.shared.store);
        let mut object = store.get(&key).cloned().expect("object to modify exists");
        change(&mut object);
        store
            .update(&key, object, None)
            .expect("unconditional update")
    }

    /// Deletes the object at `path` as another client would. Not logged as a call.
    pub fn remove(&self, path: &str) -> Option<Value> {
        lock(&self.shared.store)
            .delete(&key_of(path), None, None)
            .ok()
    }

    /// Forgets the change history: watches resuming from before now get 410 Gone.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// Ends every open watch (as an API server restart or a load balancer would).
    pub fn disconnect_watches(&self) {
        self.shared.disconnect.send_modify(|g| *g += 1);
    }

    /// The current global revision.
    pub fn revision(&self) -> u64 {
        lock(&self.shared.store).revision()
    }
}
