//! The HTTP side: one handler that routes every request by its path and
//! method to the store, as the API server's REST registry does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::path::{parse, Target};
use crate::selector::Selector;
use crate::store::{Change, Key, Refusal};
use crate::{lock, Call, FaultAction, Shared};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

fn answer(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn refuse(r: &Refusal) -> Response {
    answer(r.code, &status_body(r.code, r.reason, &r.message))
}

fn verb_of(
    method: &Method,
    target: Option<&Target>,
    query: &HashMap<String, String>,
) -> &'static str {
    let named = target.is_some_and(|t| t.name.is_some());
    let watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    match *method {
        Method::GET if named => "get",
        Method::GET if watch => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    url_pairs(uri.query().unwrap_or(""))
}

fn url_pairs(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = std::time::Instant::now();
    let target = parse(uri.path());
    let query = query_map(&uri);
    let verb = verb_of(&method, target.as_ref(), &query);
    let header_list: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let resource = target
        .as_ref()
        .map(|t| t.resource.plural.clone())
        .unwrap_or_default();
    // The call's latency is its whole time from arrival to answer, as a real
    // server's is: the request's half of the round trip before it is served,
    // the answer's half after, so serving it takes none of its own.
    let latency = *lock(&shared.latency);
    crate::latency::wait(arrived, latency / 2).await;
    let response = match shared.take_fault(verb, &resource, &header_list) {
        Some(FaultAction::Fail { code, retry_after }) => {
            let mut r = answer(
                code,
                &status_body(
                    code,
                    "InjectedFault",
                    &format!("injected {code} (fake API server)"),
                ),
            );
            if let Some(secs) = retry_after {
                r.headers_mut().insert(
                    "retry-after",
                    secs.to_string().parse().expect("digits are a header value"),
                );
            }
            r
        }
        Some(FaultAction::Delay(d)) => {
            tokio::time::sleep(d).await;
            serve(&shared, verb, target, &query, &headers, &body)
        }
        Some(FaultAction::DelayAnswer(d)) => {
            let r = serve(&shared, verb, target, &query, &headers, &body);
            tokio::time::sleep(d).await;
            r
        }
        Some(FaultAction::Disconnect) => {
            let broken = futures_util::stream::once(async {
                Err::<Bytes, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected disconnect (fake API server)",
                ))
            });
            let mut r = Response::new(Body::from_stream(broken));
            // Logged as "no answer".
            r.extensions_mut().insert(NoAnswer);
            r
        }
        None => serve(&shared, verb, target, &query, &headers, &body),
    };
    crate::latency::wait(arrived, latency).await;
    let status = if response.extensions().get::<NoAnswer>().is_some() {
        0
    } else {
        response.status().as_u16()
    };
    lock(&shared.calls).push(Call {
        verb,
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        resource,
        subresource: parse(uri.path()).and_then(|t| t.subresource),
        headers: header_list,
        status,
    });
    shared.logged.send_modify(|n| *n += 1);
    response
}

/// Marks a response that is no answer (a broken connection).
#[derive(Clone, Copy)]
struct NoAnswer;

fn serve(
    shared: &Arc<Shared>,
    verb: &'static str,
    target: Option<Target>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some(target) = target else {
        return answer(
            404,
            &status_body(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    };
    if lock(&shared.hidden).contains(&target.resource.plural) {
        return answer(
            404,
            &status_body(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    }
    if let Some(sub) = &target.subresource {
        // A scripted subresource create (`serviceaccounts/token`).
        let scripted = lock(&shared.responders)
            .get(&format!("{}/{sub}", target.resource.plural))
            .cloned();
        if let (Some(respond), "create") = (scripted, verb) {
            let mut object = serde_json::from_slice::<Value>(body).unwrap_or(json!({}));
            if object["metadata"]["name"].is_null() {
                object["metadata"]["name"] = json!(target.name);
            }
            let (code, answer_body) = respond(&object);
            return answer(code, &answer_body);
        }
        if sub != "status" || !target.resource.has_status_subresource() {
            return answer(
                404,
                &status_body(404, "NotFound", &format!("subresource {sub:?} not found")),
            );
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let parse_json = || serde_json::from_slice::<Value>(body);
    match verb {
        "get" => get(shared, &target),
        "list" => list(shared, &target, query),
        "watch" => watch(shared, &target, query),
        "create" => {
            let Ok(object) = parse_json() else {
                return answer(400, &status_body(400, "BadRequest", "body is not JSON"));
            };
            create(shared, &target, object)
        }
        "update" => {
            let Ok(object) = parse_json() else {
                return answer(400, &status_body(400, "BadRequest", "body is not JSON"));
            };
            update(shared, &target, object)
        }
        "patch" => patch(shared, &target, query, &content_type, body),
        "delete" => delete(shared, &target, body),
        _ => answer(
            405,
            &status_body(405, "MethodNotAllowed", &format!("{verb} is not modelled")),
        ),
    }
}

fn key(target: &Target) -> Key {
    (
        target.resource.clone(),
        target.namespace.clone().unwrap_or_default(),
        target.name.clone().unwrap_or_default(),
    )
}

fn get(shared: &Shared, target: &Target) -> Response {
    let k = key(target);
    match lock(&shared.store).get(&k) {
        Some(o) => answer(200, o),
        None => refuse(&Refusal::not_found(&k)),
    }
}

fn selectors(query: &HashMap<String, String>) -> Result<(Selector, Selector), Box<Response>> {
    let parse = |name: &str, parser: fn(&str) -> Result<Selector, String>| {
        parser(query.get(name).map(String::as_str).unwrap_or(""))
            .map_err(|e| Box::new(answer(400, &status_body(400, "BadRequest", &e))))
    };
    Ok((
        parse("labelSelector", Selector::parse)?,
        parse("fieldSelector", Selector::parse_fields)?,
    ))
}

fn list(shared: &Shared, target: &Target, query: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(query) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let store = lock(&shared.store);
    let items = store.list(
        &target.resource,
        target.namespace.as_deref(),
        &labels,
        &fields,
    );
    let offset: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let page: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
    let mut metadata = json!({"resourceVersion": store.revision().to_string()});
    if offset + page.len() < items.len() {
        metadata["continue"] = json!((offset + page.len()).to_string());
    }
    let kind = page
        .first()
        .and_then(|o| o["kind"].as_str())
        .map(|k| format!("{k}List"))
        .unwrap_or_else(|| "List".into());
    answer(
        200,
        &json!({"kind": kind, "apiVersion": target.resource.group_version,
            "metadata": metadata, "items": page}),
    )
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn watch(shared: &Arc<Shared>, target: &Target, query: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(query) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(std::time::Duration::from_secs(1800));
    let from = query.get("resourceVersion").cloned().unwrap_or_default();
    let (initial, mut events, mut watermark) = {
        let store = lock(&shared.store);
        let events = store.subscribe();
        let initial: Option<Vec<(String, Value)>> = if from.is_empty() || from == "0" {
            Some(
                store
                    .list(
                        &target.resource,
                        target.namespace.as_deref(),
                        &labels,
                        &fields,
                    )
                    .into_iter()
                    .map(|o| ("ADDED".to_owned(), o))
                    .collect(),
            )
        } else {
            match from.parse::<u64>() {
                Ok(rv) => store.changes_since(rv).map(|changes| {
                    changes
                        .into_iter()
                        .filter(|c| matches(c, target, &labels, &fields))
                        .map(|c| (c.kind.to_owned(), c.object))
                        .collect()
                }),
                Err(_) => None,
            }
        };
        (initial, events, store.revision())
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1024);
    let target = target.clone();
    let interval = shared.bookmark_interval;
    let mut disconnect = shared.disconnect.subscribe();
    let group_version = target.resource.group_version.clone();
    tokio::spawn(async move {
        let Some(initial) = initial else {
            let gone = status_body(410, "Expired", &format!("too old resource version: {from}"));
            let _ = tx.send(Ok(event_line("ERROR", &gone))).await;
            return;
        };
        for (kind, object) in initial {
            if tx.send(Ok(event_line(&kind, &object))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            tokio::select! {
                change = events.recv() => match change {
                    Ok(c) => {
                        watermark = watermark.max(c.revision);
                        if matches(&c, &target, &labels, &fields)
                            && tx.send(Ok(event_line(c.kind, &c.object))).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let gone = status_body(410, "Expired", "watch fell behind");
                        let _ = tx.send(Ok(event_line("ERROR", &gone))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticks.tick(), if bookmarks => {
                    let mark = json!({"kind": "Bookmark", "apiVersion": group_version,
                        "metadata": {"resourceVersion": watermark.to_string()}});
                    if tx.send(Ok(event_line("BOOKMARK", &mark))).await.is_err() {
                        return;
                    }
                }
                _ = disconnect.changed() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn matches(change: &Change, target: &Target, labels: &Selector, fields: &Selector) -> bool {
    change.resource == target.resource
        && target
            .namespace
            .as_deref()
            .is_none_or(|ns| change.object["metadata"]["namespace"].as_str() == Some(ns))
        && labels.matches_labels(&change.object["metadata"]["labels"])
        && fields.matches_fields(&change.object)
}

fn create(shared: &Shared, target: &Target, mut object: Value) -> Response {
    if let Some(respond) = lock(&shared.responders)
        .get(&target.resource.plural)
        .cloned()
    {
        let (code, body) = respond(&object);
        return answer(code, &body);
    }
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
        return answer(
            422,
            &status_body(
                422,
                "Invalid",
                "metadata.name: Required value (generateName is not modelled)",
            ),
        );
    };
    if target.name.is_some() || target.subresource.is_some() {
        return answer(
            405,
            &status_body(405, "MethodNotAllowed", "create on an object path"),
        );
    }
    if target.resource.has_status_subresource() {
        if let Some(o) = object.as_object_mut() {
            o.remove("status");
        }
    }
    let mut k = key(target);
    k.2 = name;
    match lock(&shared.store).create(k, object) {
        Ok(o) => answer(201, &o),
        Err(r) => refuse(&r),
    }
}

/// Keeps what the addressed part (main resource or status) may not change.
fn confine(target: &Target, current: &Value, mut proposed: Value) -> Value {
    if !target.resource.has_status_subresource() {
        return proposed;
    }
    if target.subresource.is_some() {
        let mut next = current.clone();
        next["status"] = proposed.get("status").cloned().unwrap_or(Value::Null);
        if next["status"].is_null() {
            if let Some(o) = next.as_object_mut() {
                o.remove("status");
            }
        }
        next["metadata"]["resourceVersion"] = proposed["metadata"]["resourceVersion"].clone();
        next
    } else {
        match current.get("status") {
            Some(s) => proposed["status"] = s.clone(),
            None => {
                if let Some(o) = proposed.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        proposed
    }
}

fn update(shared: &Shared, target: &Target, object: Value) -> Response {
    let k = key(target);
    let mut store = lock(&shared.store);
    let Some(current) = store.get(&k).cloned() else {
        return refuse(&Refusal::not_found(&k));
    };
    let expected = object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let next = confine(target, &current, object);
    match store.update(&k, next, expected.as_deref()) {
        Ok(o) => answer(200, &o),
        Err(r) => refuse(&r),
    }
}

fn patch(
    shared: &Shared,
    target: &Target,
    query: &HashMap<String, String>,
    content_type: &str,
    body: &Bytes,
) -> Response {
    let bad = |m: &str| answer(400, &status_body(400, "BadRequest", m));
    let patch: Value = match content_type {
        "application/apply-patch+yaml" => {
            if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return bad("PATCH with apply requires fieldManager");
            }
            match serde_yaml::from_slice(body) {
                Ok(v) => v,
                Err(e) => return bad(&format!("apply body: {e}")),
            }
        }
        "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json" => match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad(&format!("patch body: {e}")),
        },
        other => {
            return answer(
                415,
                &status_body(415, "UnsupportedMediaType", &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {other:?}")),
            )
        }
    };
    if content_type == "application/strategic-merge-patch+json" && target.resource.is_custom() {
        return answer(
            415,
            &status_body(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        );
    }
    let k = key(target);
    let mut store = lock(&shared.store);
    let current = match store.get(&k).cloned() {
        Some(c) => c,
        None if content_type == "application/apply-patch+yaml" && target.subresource.is_none() => {
            let mut object = patch;
            if target.resource.has_status_subresource() {
                if let Some(o) = object.as_object_mut() {
                    o.remove("status");
                }
            }
            return match store.create(k, object) {
                Ok(o) => answer(201, &o),
                Err(r) => refuse(&r),
            };
        }
        None => return refuse(&Refusal::not_found(&k)),
    };
    let mut next = current.clone();
    let expected;
    if content_type == "application/json-patch+json" {
        let ops: json_patch::Patch = match serde_json::from_value(patch) {
            Ok(p) => p,
            Err(e) => return bad(&format!("json patch: {e}")),
        };
        if let Err(e) = json_patch::patch(&mut next, &ops) {
            return answer(422, &status_body(422, "Invalid", &e.to_string()));
        }
        expected = None;
    } else {
        expected = patch["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        json_patch::merge(&mut next, &patch);
    }
    // The patched object carries the version it was read at; the store
    // checks the patch's own precondition, if it named one.
    next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    let next = confine(target, &current, next);
    match store.update(&k, next, expected.as_deref()) {
        Ok(o) => answer(200, &o),
        Err(r) => refuse(&r),
    }
}

fn delete(shared: &Shared, target: &Target, body: &Bytes) -> Response {
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let pre = &options["preconditions"];
    let k = key(target);
    let result =
        lock(&shared.store).delete(&k, pre["uid"].as_str(), pre["resourceVersion"].as_str());
    match result {
        Ok(o) => answer(200, &o),
        Err(r) => refuse(&r),
    }
}
