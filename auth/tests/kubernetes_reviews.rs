//! `kubernetes` mode against `kube-fake` (no real API server runs here): the
//! fake stores nothing for reviews; its scripted answers follow the real
//! API's rules (a TokenReview names the audiences, among those asked, that
//! the token was issued for).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use auth::{Auth, AuthConfig, AuthError, AuthMode, Verb};
use axum::http::{HeaderMap, HeaderValue};
use kube_fake::{FakeApiServer, Fault, FaultAction};
use serde_json::{json, Value};

const USER: &str = "system:serviceaccount:monitoring:alertmanager";

/// Tokens the fake knows: token → audiences it was issued for.
fn tokens() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        ("token-for-the-gateway-0123", vec!["gateway-service"]),
        ("token-for-data-storage-0123", vec!["data-storage-service"]),
        (
            "token-for-the-api-server-01",
            vec!["https://kubernetes.default.svc"],
        ),
    ])
}

type Bodies = Arc<Mutex<Vec<Value>>>;

/// Scripts TokenReview, SubjectAccessReview (only `create` allowed) and
/// SelfSubjectAccessReview (`allowed_self`) answers, recording their bodies.
fn script(fake: &FakeApiServer, allowed_self: bool) -> (Bodies, Bodies) {
    let token_bodies: Bodies = Arc::default();
    let access_bodies: Bodies = Arc::default();
    let recorded = token_bodies.clone();
    fake.respond_to_create("tokenreviews", move |body| {
        recorded.lock().unwrap().push(body.clone());
        let token = body["spec"]["token"].as_str().unwrap_or("");
        let asked: Vec<&str> = body["spec"]["audiences"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let status = match tokens().get(token) {
            Some(issued) => {
                let common: Vec<&str> = issued.iter().copied().filter(|a| asked.contains(a)).collect();
                if !asked.is_empty() && common.is_empty() {
                    json!({"authenticated": false, "error": "token audiences is invalid for the target audiences"})
                } else {
                    json!({"authenticated": true, "audiences": common,
                        "user": {"username": USER, "uid": "uid-1234",
                            "groups": ["system:serviceaccounts"],
                            "extra": {"authentication.kubernetes.io/pod-name": ["alertmanager-0"]}}})
                }
            }
            None => json!({"authenticated": false}),
        };
        (201, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "metadata": {}, "spec": body["spec"], "status": status}))
    });
    let recorded = access_bodies.clone();
    fake.respond_to_create("subjectaccessreviews", move |body| {
        recorded.lock().unwrap().push(body.clone());
        let allowed = body["spec"]["resourceAttributes"]["verb"] == "create";
        (
            201,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "metadata": {}, "spec": body["spec"], "status": {"allowed": allowed}}),
        )
    });
    fake.respond_to_create("selfsubjectaccessreviews", move |body| {
        (
            201,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {}, "spec": body["spec"], "status": {"allowed": allowed_self}}),
        )
    });
    (token_bodies, access_bodies)
}

async fn auth_for(fake: &FakeApiServer, service: &str) -> Auth {
    let config = AuthConfig {
        mode: AuthMode::Kubernetes,
        namespace: Some("kubernaut-system".into()),
        api_server_url: Some(fake.url().to_owned()),
        ..AuthConfig::default()
    };
    Auth::new(&config, service).await.unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

#[tokio::test]
async fn a_token_for_another_audience_is_401_and_the_review_names_ours() {
    let fake = FakeApiServer::start().await;
    let (token_bodies, _) = script(&fake, true);
    let gateway = auth_for(&fake, "gateway-service").await;
    let ok = gateway
        .check(&bearer("token-for-the-gateway-0123"), Verb::Create)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.subject, USER);
    for other in ["token-for-data-storage-0123", "token-for-the-api-server-01"] {
        let e = gateway
            .check(&bearer(other), Verb::Create)
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::InvalidToken), "{other}: {e}");
    }
    for body in token_bodies.lock().unwrap().iter() {
        assert_eq!(body["spec"]["audiences"], json!(["gateway-service"]));
    }
}

#[tokio::test]
async fn the_access_review_carries_uid_and_extra_from_the_token_review() {
    let fake = FakeApiServer::start().await;
    let (_, access_bodies) = script(&fake, true);
    let gateway = auth_for(&fake, "gateway-service").await;
    gateway
        .check(&bearer("token-for-the-gateway-0123"), Verb::Create)
        .await
        .unwrap();
    let bodies = access_bodies.lock().unwrap();
    let spec = &bodies[0]["spec"];
    assert_eq!(spec["user"], USER);
    assert_eq!(spec["uid"], "uid-1234");
    assert_eq!(
        spec["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["alertmanager-0"])
    );
    assert_eq!(spec["resourceAttributes"]["name"], "gateway-service");
    assert_eq!(spec["resourceAttributes"]["namespace"], "kubernaut-system");
}

#[tokio::test]
async fn a_403_names_the_cluster_role_of_that_service() {
    let fake = FakeApiServer::start().await;
    script(&fake, true);
    let gateway = auth_for(&fake, "gateway-service").await;
    let e = gateway
        .check(&bearer("token-for-the-gateway-0123"), Verb::List)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("kubernaut-audit-gateway-signal-sender"),
        "{text}"
    );
    assert!(!text.contains("data-storage-client"), "{text}");
    let data_storage = auth_for(&fake, "data-storage-service").await;
    let e = data_storage
        .check(&bearer("token-for-data-storage-0123"), Verb::List)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("ClusterRole data-storage-client"),
        "{e}"
    );
}

#[tokio::test]
async fn missing_rbac_for_the_reviews_makes_readiness_fail_with_the_reason() {
    let fake = FakeApiServer::start().await;
    script(&fake, false);
    let gateway = auth_for(&fake, "gateway-service").await;
    let e = gateway.check_ready().await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("tokenreviews"), "{text}");
    assert!(
        text.contains("ClusterRole kubernaut-audit-gateway"),
        "{text}"
    );

    // With the permissions: ready; then the API server starts refusing the
    // reviews (RBAC removed): requests are 503 and readiness asks again.
    let fake = FakeApiServer::start().await;
    script(&fake, true);
    let gateway = auth_for(&fake, "gateway-service").await;
    gateway.check_ready().await.unwrap();
    assert_eq!(fake.count("create", Some("selfsubjectaccessreviews")), 2);
    gateway.check_ready().await.unwrap();
    assert_eq!(
        fake.count("create", Some("selfsubjectaccessreviews")),
        2,
        "cached"
    );
    fake.inject(
        Fault::new(
            FaultAction::Fail {
                code: 403,
                retry_after: None,
            },
            1,
        )
        .resource("tokenreviews"),
    );
    let e = gateway
        .check(&bearer("token-for-the-gateway-0123"), Verb::Create)
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::Unavailable(_)), "{e}");
    gateway.check_ready().await.unwrap();
    assert_eq!(
        fake.count("create", Some("selfsubjectaccessreviews")),
        4,
        "a refused review re-checks the permissions"
    );
}

#[tokio::test]
async fn one_token_costs_one_review_per_ttl() {
    let fake = FakeApiServer::start().await;
    script(&fake, true);
    let gateway = auth_for(&fake, "gateway-service").await;
    for _ in 0..20 {
        gateway
            .check(&bearer("token-for-the-gateway-0123"), Verb::Create)
            .await
            .unwrap();
    }
    assert_eq!(fake.count("create", Some("tokenreviews")), 1);
    assert_eq!(fake.count("create", Some("subjectaccessreviews")), 1);
}
