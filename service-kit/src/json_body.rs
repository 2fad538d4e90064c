//! Reading a request body that must be JSON: its media type checked, its size
//! bounded by the router's body limit, and every failure named.
//!
//! Both services answer these failures as problem documents (415, 413, 400),
//! each with its own problem type and wording; this module decides *which*
//! failure it is, once, so the two cannot drift apart (a media type one
//! accepts and the other refuses, a 413 one of them answers as 400).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};

/// What a body without a `Content-Type` header (or with an empty one) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingContentType {
    /// Read as JSON. Webhook senders and scripts omit the header; refusing
    /// them (a 4xx Alertmanager never retries) would drop their signals.
    AsJson,
    /// Refused as an unsupported media type.
    Refuse,
}

/// Why a body could not be read as JSON bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The declared media type is not JSON (or none was declared where one is
    /// required); the text says what was sent.
    #[error("expected Content-Type application/json, got {0}")]
    UnsupportedMediaType(String),
    /// The body exceeds the router's body limit.
    #[error("request body exceeds the body size limit")]
    TooLarge,
    /// The body could not be read (the connection failed mid-body, …).
    #[error("request body could not be read: {0}")]
    Unreadable(String),
}

/// `true` for `application/json` and any `application/*+json`, parameters
/// (`; charset=utf-8`) and case ignored.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body's bytes, once its media type is JSON (or absent and `missing`
/// allows it) and it fits the router's body limit.
pub async fn json_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
    missing: MissingContentType,
) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)").trim().to_owned())
        .filter(|v| !v.is_empty());
    match declared {
        Some(content_type) if !is_json(&content_type) => {
            return Err(BodyError::UnsupportedMediaType(format!(
                "Content-Type {content_type:?}"
            )));
        }
        None if missing == MissingContentType::Refuse => {
            return Err(BodyError::UnsupportedMediaType(
                "no Content-Type".to_owned(),
            ));
        }
        _ => {}
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            BodyError::TooLarge
        } else {
            BodyError::Unreadable(rejection.body_text())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn json_media_types_are_recognised() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
        assert!(!is_json(""));
    }

    async fn call(
        missing: MissingContentType,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> String {
        let mut req = Request::post("/");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        match json_bytes(req.body(Body::from(body)).unwrap(), &(), missing).await {
            Ok(bytes) => format!("ok {}", bytes.len()),
            Err(e) => format!("{e:?}"),
        }
    }

    #[tokio::test]
    async fn each_failure_is_told_apart() {
        use MissingContentType::*;
        let json = || b"{}".to_vec();
        assert_eq!(call(Refuse, Some("application/json"), json()).await, "ok 2");
        assert_eq!(call(AsJson, None, json()).await, "ok 2");
        assert_eq!(call(AsJson, Some(""), json()).await, "ok 2");
        assert_eq!(
            call(Refuse, None, json()).await,
            r#"UnsupportedMediaType("no Content-Type")"#
        );
        assert_eq!(
            call(AsJson, Some("text/plain"), json()).await,
            r#"UnsupportedMediaType("Content-Type \"text/plain\"")"#
        );
        // Past axum's default body limit (2 MB) when no layer sets another.
        let big = vec![b' '; 3 * 1024 * 1024];
        assert_eq!(
            call(Refuse, Some("application/json"), big).await,
            "TooLarge"
        );
    }
}
