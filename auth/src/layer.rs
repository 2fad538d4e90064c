//! The middleware that protects a route with a verb.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::{Auth, Verb};

/// Identity headers a client might send to impersonate someone; removed from
/// every request before handlers see it, so identity comes only from auth.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-remote-user",
    "x-remote-group",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-user",
    "x-actor-id",
    "impersonate-user",
    "impersonate-group",
    "impersonate-uid",
];

/// Requires one of its verbs on the wrapped routes (see [`Auth::require`]
/// and [`Auth::require_any`]).
#[derive(Debug, Clone)]
pub struct RequireLayer {
    auth: Auth,
    verbs: &'static [Verb],
}

impl RequireLayer {
    pub(crate) fn new(auth: Auth, verbs: &'static [Verb]) -> Self {
        Self { auth, verbs }
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = RequireService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireService {
            inner,
            auth: self.auth.clone(),
            verbs: self.verbs,
        }
    }
}

/// The service [`RequireLayer`] wraps routes in.
#[derive(Debug, Clone)]
pub struct RequireService<S> {
    inner: S,
    auth: Auth,
    verbs: &'static [Verb],
}

impl<S> Service<Request> for RequireService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (auth, verbs) = (self.auth.clone(), self.verbs);
        Box::pin(async move {
            let headers = request.headers_mut();
            for name in IDENTITY_HEADERS {
                headers.remove(*name);
            }
            match auth.check_any(request.headers(), verbs).await {
                Ok(identity) => {
                    if let Some(identity) = identity {
                        request.extensions_mut().insert(identity);
                    }
                    inner.call(request).await
                }
                Err(e) => {
                    tracing::info!(verbs = ?verbs, reason = %e, "request refused by auth");
                    Ok(e.into_response())
                }
            }
        })
    }
}
