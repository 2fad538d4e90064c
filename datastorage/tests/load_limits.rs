//! Bounded work per caller: a global limit on requests in progress (503 +
//! Retry-After past it), a per-request deadline (504), and `/readyz` answering
//! through both. Slow clients are real sockets that send headers and stall
//! mid-body, the cheapest way to hold a request open.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Opens a batch request whose body never arrives in full.
async fn stalled_request(app: &TestApp) -> TcpStream {
    let mut socket = TcpStream::connect(app.api).await.unwrap();
    let head = format!(
        "POST /api/v1/audit/events/batch HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[",
        app.api
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

#[tokio::test]
async fn past_the_concurrency_limit_requests_get_503_and_readyz_still_answers() {
    let app = spawn_app_with(|c| {
        c.limits.max_concurrent_requests = 2;
        c.limits.request_timeout = Duration::from_secs(30);
    })
    .await;
    let _slow = [stalled_request(&app).await, stalled_request(&app).await];
    // The stalled requests hold both permits once the server has read their
    // headers; poll until the limit shows (a readiness signal of sorts).
    let mut refused = None;
    for _ in 0..100 {
        let resp = app.post_batch(&events("corr-load", 1)).await;
        if resp.status() == 503 {
            refused = Some(resp);
            break;
        }
        tokio::task::yield_now().await;
    }
    let resp = refused.expect("a third request must be refused while two are in progress");
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_problem(resp, 503, "service-unavailable").await;

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "/readyz must answer under load");
    let doc = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_504() {
    let app = spawn_app_with(|c| c.limits.request_timeout = Duration::from_millis(300)).await;
    let mut socket = stalled_request(&app).await;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        let n = socket.read(&mut buf).await.unwrap();
        answer.push_str(&String::from_utf8_lossy(&buf[..n]));
    })
    .await
    .expect("the server answers a stalled request by its deadline");
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("gateway-timeout"), "{answer}");
    // The permit came back: the next request is served.
    assert_eq!(
        app.post_batch(&events("corr-deadline", 1)).await.status(),
        201
    );
}
