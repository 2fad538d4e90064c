//! The fake behaves like the API server on the points the workspace depends
//! on, checked through the production `kube::Client` stack.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, Preconditions,
};
use kube::runtime::watcher;
use kube::Api;
use kube_fake::{FakeApiServer, Fault, FaultAction};
use serde_json::json;

const NS: &str = "ns";

fn rr_api(fake: &FakeApiServer) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubernaut.ai", "v1alpha1", "RemediationRequest"),
        "remediationrequests",
    );
    Api::namespaced_with(fake.client(), NS, &resource)
}

fn rr(name: &str, labels: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequest",
        "metadata": {"name": name, "labels": labels},
        "spec": {"a": 1}, "status": {"ignored": true}
    }))
    .unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API status, got {other}"),
    }
}

#[tokio::test]
async fn uid_is_stable_and_resource_versions_guard_writes() {
    let fake = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(fake.client(), NS);
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "l"},
        "spec": {"holderIdentity": "a"}}))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(
        code(
            leases
                .create(&PostParams::default(), &lease)
                .await
                .unwrap_err()
        ),
        409
    );
    let mut next = created.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let replaced = leases
        .replace("l", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_eq!(
        replaced.metadata.uid, created.metadata.uid,
        "replace keeps the uid"
    );
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    // The stale version is refused on replace and on delete.
    assert_eq!(
        code(
            leases
                .replace("l", &PostParams::default(), &next)
                .await
                .unwrap_err()
        ),
        409
    );
    let stale = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: created.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    assert_eq!(code(leases.delete("l", &stale).await.unwrap_err()), 409);
    let fresh = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: replaced.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    leases.delete("l", &fresh).await.unwrap();
    assert_eq!(code(leases.get("l").await.unwrap_err()), 404);
}

#[tokio::test]
async fn status_subresource_and_main_resource_ignore_each_other() {
    let fake = FakeApiServer::start().await;
    let api = rr_api(&fake);
    let created = api
        .create(&PostParams::default(), &rr("rr-1", json!({})))
        .await
        .unwrap();
    assert!(
        created.data.get("status").is_none(),
        "create ignores status"
    );
    let patched = api
        .patch_status(
            "rr-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"a": 2}, "status": {"count": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["a"], 1, "status writes ignore spec");
    assert_eq!(patched.data["status"]["count"], 1);
    let patched = api
        .patch(
            "rr-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"a": 3}, "status": {"count": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["a"], 3);
    assert_eq!(
        patched.data["status"]["count"], 1,
        "main writes ignore status"
    );
    // A merge patch naming a stale resourceVersion is a conflict.
    let stale = json!({"metadata": {"resourceVersion": created.metadata.resource_version},
        "status": {"count": 2}});
    let e = api
        .patch_status("rr-1", &PatchParams::default(), &Patch::Merge(stale))
        .await
        .unwrap_err();
    assert_eq!(code(e), 409);
}

#[tokio::test]
async fn strategic_merge_on_a_custom_resource_is_415_and_apply_needs_a_field_manager() {
    let fake = FakeApiServer::start().await;
    let api = rr_api(&fake);
    api.create(&PostParams::default(), &rr("rr-1", json!({})))
        .await
        .unwrap();
    let e = api
        .patch(
            "rr-1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"a": 2}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), 415);
    let applied = api
        .patch_status(
            "rr-1",
            &PatchParams::apply("kubernaut-gateway"),
            &Patch::Apply(json!({"apiVersion": "kubernaut.ai/v1alpha1",
                "kind": "RemediationRequest", "status": {"count": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["status"]["count"], 4);
    let call = fake.calls().into_iter().last().unwrap();
    assert_eq!(
        call.header("content-type"),
        Some("application/apply-patch+yaml")
    );
    assert!(call.query.contains("fieldManager=kubernaut-gateway"));
}

#[tokio::test]
async fn label_selectors_filter_lists_and_calls_are_counted_by_verb() {
    let fake = FakeApiServer::start().await;
    let api = rr_api(&fake);
    for (name, fp) in [("a", "x"), ("b", "y"), ("c", "x")] {
        api.create(&PostParams::default(), &rr(name, json!({"fp": fp})))
            .await
            .unwrap();
    }
    let x = api
        .list(&ListParams::default().labels("fp=x"))
        .await
        .unwrap();
    let names: Vec<_> = x
        .items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(
        api.list(&ListParams::default().labels("fp notin (x)"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(fake.count("create", Some("remediationrequests")), 3);
    assert_eq!(fake.count("list", None), 2);
}

#[tokio::test]
async fn injected_429_is_retried_by_the_default_client_after_retry_after() {
    let fake = FakeApiServer::start().await;
    fake.inject(
        Fault::new(
            FaultAction::Fail {
                code: 429,
                retry_after: Some(1),
            },
            1,
        )
        .verb("list"),
    );
    let api = rr_api(&fake);
    let started = std::time::Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        fake.count("list", None),
        2,
        "kube's retry layer retried once"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "after Retry-After"
    );
}

#[tokio::test]
async fn a_watcher_gets_bookmarks_relists_after_410_and_sees_every_change() {
    let fake = FakeApiServer::builder()
        .bookmark_interval(Duration::from_millis(50))
        .history(2)
        .start()
        .await;
    let api = rr_api(&fake);
    api.create(&PostParams::default(), &rr("a", json!({})))
        .await
        .unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    // Initial list.
    while let Some(e) = events.next().await {
        match e.unwrap() {
            watcher::Event::InitApply(o) => seen.push(o.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["a"]);
    // The history is compacted and the stream cut: the watcher resumes from a
    // version that is gone, gets 410 and lists again, seeing "b".
    api.create(&PostParams::default(), &rr("b", json!({})))
        .await
        .unwrap();
    fake.compact();
    fake.disconnect_watches();
    let mut relisted = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.next()).await {
        match e {
            Ok(watcher::Event::Init) => relisted = true,
            Ok(watcher::Event::InitDone) if relisted => break,
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                seen.push(o.metadata.name.unwrap())
            }
            _ => {}
        }
    }
    assert!(seen.contains(&"b".to_owned()), "{seen:?}");
    let watches = fake
        .calls()
        .into_iter()
        .filter(|c| c.verb == "watch")
        .count();
    assert!(watches >= 1);
    assert!(fake
        .calls()
        .iter()
        .any(|c| c.query.contains("allowWatchBookmarks=true")));
}

/// A field selector the fake does not model is refused with 400 (the API
/// server's answer to a field label a kind does not support), never answered
/// with a silently empty list a wait would take for "nothing there".
#[tokio::test]
async fn an_unmodelled_field_selector_is_refused_not_matched_as_nothing() {
    let fake = FakeApiServer::start().await;
    fake.put(
        "/api/v1/namespaces/ns/pods/p",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
    );
    let pods: Api<Pod> = Api::namespaced(fake.client(), NS);
    let by_node = ListParams::default().fields("spec.nodeName=n1");
    assert_eq!(code(pods.list(&by_node).await.unwrap_err()), 400);
    let by_name = ListParams::default().fields("metadata.name=p");
    assert_eq!(pods.list(&by_name).await.unwrap().items.len(), 1);
}

/// A call's latency is its whole round trip, as on a real server: the write is
/// stored (and its watch event sent) halfway through it, and the answer comes
/// at its end, so the fake's own work is inside the latency, not added to it.
#[tokio::test]
async fn a_write_lands_halfway_through_its_latency_and_is_answered_at_its_end() {
    let latency = Duration::from_millis(400);
    let fake = FakeApiServer::builder().latency(latency).start().await;
    let api = rr_api(&fake);
    let mut events = api
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let started = tokio::time::Instant::now();
    let create = tokio::spawn({
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &rr("a", json!({})))
                .await
        }
    });
    let event = events.next().await.expect("the watch is open").unwrap();
    assert!(
        matches!(event, kube::api::WatchEvent::Added(_)),
        "{event:?}"
    );
    let stored = started.elapsed();
    create.await.unwrap().unwrap();
    let answered = started.elapsed();
    assert!(
        stored >= latency / 2 && stored < latency,
        "stored after {stored:?} of a {latency:?} latency"
    );
    assert!(
        answered >= latency && answered < latency + latency / 4,
        "answered after {answered:?} of a {latency:?} latency"
    );
}
