//! Bearer-token authentication and verb authorization, one implementation for
//! DataStorage and the Gateway.
//!
//! Every protected route names the verb it needs ([`Verb`]); the
//! [`RequireLayer`] middleware authenticates the bearer token, checks the verb
//! against the service's own Kubernetes Service object, records who called
//! ([`Identity`]) in the request extensions, and answers 401 / 403 / 503 as
//! RFC 7807 problems otherwise. Three modes ([`AuthMode`]):
//!
//! - `kubernetes`: `TokenReview` then `SubjectAccessReview` on core `services`,
//!   resource name = the service's own Service name, in its own namespace;
//!   decisions cached for a short TTL under a SHA-256 of the token;
//! - `static`: a tokens file (token → subject + verbs), compared in constant time;
//! - `disabled`: everyone may do everything (development only, logged loudly).
//!
//! Tokens never appear in logs or in cache keys.

mod cache;
pub mod config;
mod error;
mod identity;
mod kubernetes;
mod layer;
mod static_tokens;
mod verb;

pub use config::{AuthConfig, AuthMode, PodEnvironment};
pub use error::AuthError;
pub use identity::Identity;
pub use layer::{RequireLayer, RequireService, IDENTITY_HEADERS};
pub use verb::Verb;

use std::sync::Arc;

use axum::http::HeaderMap;

/// A configured authenticator/authorizer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    inner: Arc<Mode>,
}

#[derive(Debug)]
enum Mode {
    Disabled,
    Static(static_tokens::StaticTokens),
    Kubernetes(Box<kubernetes::Reviewer>),
}

impl Auth {
    /// Builds the mode `config` selects for the service whose Kubernetes Service
    /// is `service_name` (the SubjectAccessReview's resource name).
    pub async fn new(config: &AuthConfig, service_name: &str) -> Result<Self, AuthError> {
        let mode = match config.effective_mode()? {
            AuthMode::Disabled | AuthMode::Auto => {
                tracing::warn!(
                    "AUTHENTICATION DISABLED: every caller may write and read audit data. \
                     Development only; set auth.mode to kubernetes or static"
                );
                Mode::Disabled
            }
            AuthMode::Static => {
                let path = config.tokens_file.as_ref().ok_or_else(|| {
                    AuthError::Config("auth.mode static needs auth.tokens_file".into())
                })?;
                let namespace = config
                    .resolve_namespace()
                    .unwrap_or_else(|| audit_sdk::names::NAMESPACE.to_owned());
                let tokens = static_tokens::StaticTokens::load(path, service_name, &namespace)?;
                tracing::info!(tokens = tokens.len(), file = %path.display(), "static token authentication");
                Mode::Static(tokens)
            }
            AuthMode::Kubernetes => {
                let reviewer = kubernetes::Reviewer::new(config, service_name).await?;
                tracing::info!(
                    service = service_name,
                    namespace = reviewer.namespace(),
                    "Kubernetes TokenReview/SubjectAccessReview authentication"
                );
                Mode::Kubernetes(Box::new(reviewer))
            }
        };
        Ok(Self {
            inner: Arc::new(mode),
        })
    }

    /// An authenticator that allows everything (tests, development).
    pub fn disabled() -> Self {
        Self {
            inner: Arc::new(Mode::Disabled),
        }
    }

    /// Whether requests are checked at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(*self.inner, Mode::Disabled)
    }

    /// Whether authentication can work (for `/readyz`): in `kubernetes` mode,
    /// whether this service may create TokenReviews and SubjectAccessReviews
    /// (asked with SelfSubjectAccessReviews, cached briefly). The error says
    /// what is missing and which ClusterRole grants it.
    pub async fn check_ready(&self) -> Result<(), AuthError> {
        match &*self.inner {
            Mode::Kubernetes(reviewer) => reviewer.check_ready().await,
            Mode::Disabled | Mode::Static(_) => Ok(()),
        }
    }

    /// The layer that protects a route with `verb`.
    pub fn require(&self, verb: Verb) -> RequireLayer {
        RequireLayer::new(self.clone(), verb.alone())
    }

    /// The layer that protects a route with any one of `verbs`: the caller
    /// needs one of them granted, asked in order (a read route accepts `get`
    /// or `list`, since RBAC roles written for the reference platform grant
    /// readers `get` only).
    pub fn require_any(&self, verbs: &'static [Verb]) -> RequireLayer {
        assert!(!verbs.is_empty(), "a route needs at least one verb");
        RequireLayer::new(self.clone(), verbs)
    }

    /// [`Auth::check`] for any one of `verbs`, asked in order until one is
    /// granted; when none is, the refusal of the first.
    pub async fn check_any(
        &self,
        headers: &HeaderMap,
        verbs: &[Verb],
    ) -> Result<Option<Identity>, AuthError> {
        let mut refused = None;
        for &verb in verbs {
            match self.check(headers, verb).await {
                Err(e @ AuthError::Forbidden { .. }) => {
                    refused.get_or_insert(e);
                }
                other => return other,
            }
        }
        Err(refused.expect("at least one verb was asked"))
    }

    /// Authenticates the request's bearer token and authorizes `verb`.
    /// `Ok(None)` when authentication is disabled.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        verb: Verb,
    ) -> Result<Option<Identity>, AuthError> {
        if let Mode::Disabled = *self.inner {
            return Ok(None);
        }
        let token = bearer_token(headers)?;
        let identity = match &*self.inner {
            Mode::Disabled => unreachable!("handled above"),
            Mode::Static(tokens) => tokens.check(token, verb)?,
            Mode::Kubernetes(reviewer) => reviewer.check(token, verb).await?,
        };
        Ok(Some(identity))
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?;
    let text = value.to_str().map_err(|_| AuthError::MalformedToken)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthError::MalformedToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(char::is_whitespace)
    {
        return Err(AuthError::MalformedToken);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer_token(&headers("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&headers("bearer abc")).unwrap(), "abc");
        assert!(matches!(
            bearer_token(&HeaderMap::new()),
            Err(AuthError::MissingToken)
        ));
        for bad in ["Basic abc", "Bearer", "Bearer ", "Bearer a b", "abc"] {
            assert!(
                matches!(bearer_token(&headers(bad)), Err(AuthError::MalformedToken)),
                "{bad}"
            );
        }
    }
}
