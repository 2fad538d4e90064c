//! Objects, resource versions and the watch history, as etcd + the API
//! server's registry would keep them.
//!
//! One global revision counter (as etcd's): every write that changes an object
//! bumps it, and the object's `resourceVersion` is the revision of its last
//! write. A no-op update (same content) writes nothing and keeps the version.
//! `uid` is assigned once on create and never changes.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::path::Resource;
use crate::selector::Selector;

/// Key of a stored object: resource, namespace (`""` cluster-scoped), name.
pub type Key = (Resource, String, String);

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Revision of the write.
    pub revision: u64,
    /// The resource type.
    pub resource: Resource,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// The object after the write (before it, for `DELETED`).
    pub object: Value,
}

/// Why a write was refused, as an HTTP status and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub code: u16,
    /// Kubernetes `reason` (`AlreadyExists`, `Conflict`, `NotFound`, …).
    pub reason: &'static str,
    /// Human message.
    pub message: String,
}

impl Refusal {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn not_found(key: &Key) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {:?} not found", key.0.plural, key.2),
        )
    }
}

/// The whole state.
#[derive(Debug)]
pub struct Store {
    revision: u64,
    objects: BTreeMap<Key, Value>,
    /// Recent changes; a watch from a revision older than the first retained
    /// one gets 410 Gone.
    history: VecDeque<Change>,
    /// The oldest revision a watch may start from.
    compacted: u64,
    history_limit: usize,
    events: broadcast::Sender<Change>,
}

/// Revision as the API server renders it.
pub fn rv_of(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Self {
            revision: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            history_limit,
            events: broadcast::channel(65_536).0,
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.events.subscribe()
    }

    /// Forgets the history: watches resuming from an older revision get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.revision;
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of `resource` in `namespace` (all when `None`) matching the selectors.
    pub fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, ns, _), _)| r == resource && namespace.is_none_or(|n| n == ns))
            .map(|(_, o)| o)
            .filter(|o| labels.matches_labels(&o["metadata"]["labels"]) && fields.matches_fields(o))
            .cloned()
            .collect()
    }

    /// Changes after `revision` (for a resuming watch), or `None` when that
    /// part of the history was compacted (410 Gone).
    pub fn changes_since(&self, revision: u64) -> Option<Vec<Change>> {
        if revision < self.compacted {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|c| c.revision > revision)
                .cloned()
                .collect(),
        )
    }

    fn record(&mut self, change: Change) {
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.revision;
            }
        }
        // No receiver is fine: nobody watches.
        let _ = self.events.send(change);
    }

    /// Creates `object` under `key`: 409 AlreadyExists when it exists.
    pub fn create(&mut self, key: Key, mut object: Value) -> Result<Value, Refusal> {
        if self.objects.contains_key(&key) {
            return Err(Refusal::new(
                409,
                "AlreadyExists",
                format!("{} {:?} already exists", key.0.plural, key.2),
            ));
        }
        self.revision += 1;
        let meta = &mut object["metadata"];
        meta["name"] = json!(key.2);
        if !key.1.is_empty() {
            meta["namespace"] = json!(key.1);
        }
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["resourceVersion"] = json!(self.revision.to_string());
        meta["generation"] = json!(1);
        meta["creationTimestamp"] =
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        if let Some(meta) = meta.as_object_mut() {
            meta.remove("deletionTimestamp");
            meta.remove("managedFields");
        }
        self.objects.insert(key.clone(), object.clone());
        self.record(Change {
            revision: self.revision,
            resource: key.0,
            kind: "ADDED",
            object: object.clone(),
        });
        Ok(object)
    }

    /// Replaces the stored object with `object`, keeping the server-owned
    /// metadata (`uid`, `creationTimestamp`, `generation`). `expected_rv`:
    /// the precondition (409 Conflict when stale).
    pub fn update(
        &mut self,
        key: &Key,
        mut object: Value,
        expected_rv: Option<&str>,
    ) -> Result<Value, Refusal> {
        let Some(current) = self.objects.get(key) else {
            return Err(Refusal::not_found(key));
        };
        let current_rv = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("");
        if let Some(expected) = expected_rv {
            if expected != current_rv {
                return Err(Refusal::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} {:?}: the object has been modified; \
                         please apply your changes to the latest version and try again",
                        key.0.plural, key.2
                    ),
                ));
            }
        }
        if let Some(uid) = object["metadata"]["uid"].as_str() {
            if Some(uid) != current["metadata"]["uid"].as_str() {
                return Err(Refusal::new(
                    409,
                    "Conflict",
                    format!("precondition failed: uid {uid} does not match"),
                ));
            }
        }
        for field in ["uid", "creationTimestamp", "namespace", "name"] {
            if let Some(v) = current["metadata"].get(field) {
                object["metadata"][field] = v.clone();
            }
        }
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let spec_changed = current.get("spec") != object.get("spec");
        object["metadata"]["generation"] = json!(if spec_changed {
            generation + 1
        } else {
            generation
        });
        object["metadata"]["resourceVersion"] = json!(current_rv);
        if object == *current {
            // A no-op write: nothing is stored, the version stays.
            return Ok(object);
        }
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.record(Change {
            revision: self.revision,
            resource: key.0.clone(),
            kind: "MODIFIED",
            object: object.clone(),
        });
        Ok(object)
    }

    /// Deletes with optional `uid` / `resourceVersion` preconditions.
    pub fn delete(
        &mut self,
        key: &Key,
        uid: Option<&str>,
        resource_version: Option<&str>,
    ) -> Result<Value, Refusal> {
        let Some(current) = self.objects.get(key) else {
            return Err(Refusal::not_found(key));
        };
        let meta = &current["metadata"];
        if uid.is_some_and(|u| Some(u) != meta["uid"].as_str()) {
            return Err(Refusal::new(
                409,
                "Conflict",
                format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    uid.unwrap_or(""),
                    meta["uid"].as_str().unwrap_or("")
                ),
            ));
        }
        if resource_version.is_some_and(|v| Some(v) != meta["resourceVersion"].as_str()) {
            return Err(Refusal::new(
                409,
                "Conflict",
                format!(
                    "Precondition failed: ResourceVersion in precondition: {}, \
                     ResourceVersion in object meta: {}",
                    resource_version.unwrap_or(""),
                    meta["resourceVersion"].as_str().unwrap_or("")
                ),
            ));
        }
        let mut object = self.objects.remove(key).unwrap_or_default();
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.record(Change {
            revision: self.revision,
            resource: key.0.clone(),
            kind: "DELETED",
            object: object.clone(),
        });
        Ok(object)
    }
}
