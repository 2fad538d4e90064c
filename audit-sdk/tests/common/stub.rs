//! A scripted HTTP stand-in for DataStorage's batch endpoint, on loopback.
//!
//! It answers the scripted refusals first (status, headers, body), then
//! acknowledges like DataStorage (`201` with a `BatchResponse`), and records
//! every request: how many events, which ids, which bearer token, when. It
//! does not validate or store anything: tests that need DataStorage's real
//! behaviour use [`super::start_server`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use audit_sdk::api::{BatchResponse, BATCH_PATH};
use audit_sdk::AuditEvent;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Scripted {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

/// One request the stub saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub ids: Vec<uuid::Uuid>,
    pub token: Option<String>,
    pub at: Instant,
}

type Hook = Box<dyn Fn(&Seen) -> Option<Scripted> + Send + Sync>;

#[derive(Default)]
struct Inner {
    script: Mutex<VecDeque<Scripted>>,
    seen: Mutex<Vec<Seen>>,
    hook: Mutex<Option<Hook>>,
}

/// The running stub.
#[derive(Clone)]
pub struct Stub {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Stub {
    pub async fn start(script: Vec<Scripted>) -> Self {
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            ..Inner::default()
        });
        let app = Router::new()
            .route(BATCH_PATH, post(handle))
            .route(
                audit_sdk::api::READYZ_PATH,
                axum::routing::get(|| async { "ok" }),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, inner }
    }

    /// Answers decided per request (after the script is used up).
    pub fn on_request(&self, hook: impl Fn(&Seen) -> Option<Scripted> + Send + Sync + 'static) {
        *self.inner.hook.lock().unwrap() = Some(Box::new(hook));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Json(events): Json<Vec<AuditEvent>>,
) -> Response {
    let seen = Seen {
        ids: events.iter().filter_map(|e| e.event_id).collect(),
        token: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_start_matches("Bearer ").to_owned()),
        at: Instant::now(),
    };
    inner.seen.lock().unwrap().push(seen.clone());
    let scripted = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| inner.hook.lock().unwrap().as_ref().and_then(|h| h(&seen)));
    match scripted {
        Some(s) => {
            let mut response = (StatusCode::from_u16(s.status).unwrap(), s.body).into_response();
            for (name, value) in s.headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        None => (
            StatusCode::CREATED,
            Json(BatchResponse {
                created: seen.ids.len(),
                duplicates: 0,
                event_ids: seen.ids,
            }),
        )
            .into_response(),
    }
}
