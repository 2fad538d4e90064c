//! `kubernetes` mode: TokenReview, then SubjectAccessReview on the service's
//! own Service object.
//!
//! The client uses the Pod's in-cluster configuration (`kube::Config::incluster`),
//! never `KUBECONFIG`: a host path leaking into a Pod's environment must not
//! change who the service trusts. `auth.api_server_url` exists for tests
//! against a local review server.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use crate::cache::TtlCache;
use crate::{AuthConfig, AuthError, Identity, Verb};

type TokenKey = [u8; 32];

/// Reviews tokens and verbs through the Kubernetes API, with a cache.
pub struct Reviewer {
    client: Client,
    service: String,
    namespace: String,
    timeout: Duration,
    /// Token digest → who it is (`None`: not authenticated).
    identities: TtlCache<TokenKey, Option<Identity>>,
    /// (token digest, verb) → allowed.
    decisions: TtlCache<(TokenKey, Verb), bool>,
    /// Whether this service may create the reviews (`()`: yes), asked briefly cached.
    permissions: TtlCache<(), ()>,
}

/// How long a readiness answer about the review permissions is reused.
const PERMISSIONS_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer")
            .field("service", &self.service)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Reviewer {
    pub async fn new(config: &AuthConfig, service: &str) -> Result<Self, AuthError> {
        let namespace = config.resolve_namespace().ok_or_else(|| {
            AuthError::Config(
                "auth.mode kubernetes needs the service's namespace: set auth.namespace or POD_NAMESPACE"
                    .into(),
            )
        })?;
        let kube_config = match &config.api_server_url {
            Some(url) => kube::Config::new(
                url.parse()
                    .map_err(|e| AuthError::Config(format!("auth.api_server_url {url:?}: {e}")))?,
            ),
            None => kube::Config::incluster().map_err(|e| {
                AuthError::Config(format!(
                    "auth.mode kubernetes needs the Pod's in-cluster configuration ({e}); \
                     outside a cluster use auth.mode static"
                ))
            })?,
        };
        let client = Client::try_from(kube_config)
            .map_err(|e| AuthError::Config(format!("Kubernetes client: {e}")))?;
        Ok(Self {
            client,
            service: service.to_owned(),
            namespace,
            timeout: config.review_timeout,
            identities: TtlCache::new(config.cache_ttl, config.cache_capacity),
            decisions: TtlCache::new(config.cache_ttl, config.cache_capacity),
            permissions: TtlCache::new(PERMISSIONS_TTL, 1),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub async fn check(&self, token: &str, verb: Verb) -> Result<Identity, AuthError> {
        let key: TokenKey = Sha256::digest(token.as_bytes()).into();
        let identity = self
            .identities
            .get_or_try_init(key, || self.token_review(token))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let allowed = self
            .decisions
            .get_or_try_init((key, verb), || self.access_review(&identity, verb))
            .await?;
        if allowed {
            Ok(identity)
        } else {
            Err(AuthError::Forbidden {
                subject: identity.subject,
                verb,
                resource: self.service.clone(),
                namespace: self.namespace.clone(),
                role: audit_sdk::names::client_role_of(&self.service),
            })
        }
    }

    async fn token_review(&self, token: &str) -> Result<Option<Identity>, AuthError> {
        let review = TokenReview {
            // Bound to this service: a token projected for another audience
            // (or the API server's own) is not accepted here.
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.service.clone()]),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = self
            .call(api.create(&PostParams::default(), &review))
            .await?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        // An audience-aware API server names the audiences the token is
        // valid for among those asked; none means "the API server's own".
        let audiences = status.audiences.unwrap_or_default();
        if !audiences.iter().any(|a| a == &self.service) {
            tracing::debug!(audience = %self.service, ?audiences, "token not issued for this service's audience");
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        Ok(user.username.map(|subject| Identity {
            subject,
            groups: user.groups.unwrap_or_default(),
            uid: user.uid,
            extra: user.extra.unwrap_or_default(),
        }))
    }

    async fn access_review(&self, identity: &Identity, verb: Verb) -> Result<bool, AuthError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(identity.subject.clone()),
                groups: Some(identity.groups.clone()),
                uid: identity.uid.clone(),
                extra: (!identity.extra.is_empty()).then(|| identity.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(self.namespace.clone()),
                    verb: Some(verb.as_str().to_owned()),
                    group: Some(String::new()),
                    resource: Some("services".into()),
                    name: Some(self.service.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = self
            .call(api.create(&PostParams::default(), &review))
            .await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// Whether this service may create both reviews, asked with
    /// SelfSubjectAccessReviews (which every authenticated caller may create).
    pub async fn check_ready(&self) -> Result<(), AuthError> {
        self.permissions
            .get_or_try_init((), || async {
                for (group, resource) in [
                    ("authentication.k8s.io", "tokenreviews"),
                    ("authorization.k8s.io", "subjectaccessreviews"),
                ] {
                    let review = SelfSubjectAccessReview {
                        spec: SelfSubjectAccessReviewSpec {
                            resource_attributes: Some(ResourceAttributes {
                                verb: Some("create".into()),
                                group: Some(group.into()),
                                resource: Some(resource.into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
                    let answer = self
                        .call(api.create(&PostParams::default(), &review))
                        .await?;
                    if !answer.status.is_some_and(|s| s.allowed) {
                        return Err(AuthError::Unavailable(format!(
                            "this service's ServiceAccount may not create {resource}.{group}, so no \
                             caller can be authenticated; bind it to ClusterRole {}",
                            audit_sdk::names::reviewer_role_of(&self.service)
                        )));
                    }
                }
                Ok(())
            })
            .await
    }

    /// Runs one review call with the timeout; every failure is "unavailable"
    /// (503), never "allowed". A 403 means this service lacks the RBAC for
    /// the reviews: readiness is asked again at once to report it.
    async fn call<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, AuthError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(kube::Error::Api(s))) if s.code == 403 => {
                tracing::error!(
                    role = audit_sdk::names::reviewer_role_of(&self.service),
                    "Kubernetes review refused (403): this service's ServiceAccount lacks the RBAC for reviews"
                );
                self.permissions.invalidate(&()).await;
                Err(AuthError::Unavailable(format!(
                    "review refused (403 {}); bind this service's ServiceAccount to ClusterRole {}",
                    s.message,
                    audit_sdk::names::reviewer_role_of(&self.service)
                )))
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Kubernetes review API call failed");
                Err(AuthError::Unavailable(e.to_string()))
            }
            Err(_) => {
                tracing::error!(timeout = ?self.timeout, "Kubernetes review API call timed out");
                Err(AuthError::Unavailable("timeout".into()))
            }
        }
    }
}
