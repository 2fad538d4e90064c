//! DataStorage over https (`server.tls`) with a test CA: the SDK records into
//! it over both transports trusting the CA through `ca_file`, the query API
//! answers over https, a client without the CA is refused, and a rotated
//! certificate is served without a restart.

mod common;

use std::time::{Duration, Instant};

use audit_sdk::{AuditConfig, AuditEvent, AuditStore, TransportKind};
use common::*;
use serde_json::Value;
use service_kit::test_ca::TestCa;

fn https_client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .tls_info(true)
        .build()
        .unwrap()
}

fn sdk(url: &str, ca_file: Option<std::path::PathBuf>, transport: TransportKind) -> AuditConfig {
    let mut c = AuditConfig::new(url);
    c.transport = transport;
    c.flush_interval = Duration::from_millis(20);
    c.retry_min_delay = Duration::from_millis(20);
    c.retry_max_delay = Duration::from_millis(200);
    c.probe_interval = Duration::from_millis(100);
    c.token_file = None;
    c.ca_file = ca_file;
    c.shutdown_timeout = Duration::from_millis(300);
    c
}

#[tokio::test]
async fn the_sdk_records_and_the_query_api_answers_over_https_with_a_configured_ca() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let first = ca.leaf(1);
    let (cert_file, key_file) = first.install(certs.path());
    let ca_file = ca.write(certs.path());
    let app = spawn_app_with(|c| {
        c.server.tls.cert_file = Some(cert_file);
        c.server.tls.key_file = Some(key_file);
        c.server.tls.reload_interval = Duration::from_millis(50);
    })
    .await;
    let base = format!("https://localhost:{}", app.api.port());

    for (transport, corr) in [
        (TransportKind::Http, "corr-https"),
        (TransportKind::Grpc, "corr-grpc-tls"),
    ] {
        let store = AuditStore::new(sdk(&base, Some(ca_file.clone()), transport)).unwrap();
        for n in 0..10 {
            store
                .record(
                    AuditEvent::builder("test.tls.recorded", corr)
                        .category("test")
                        .action(format!("n{n}"))
                        .actor("service", "tls-test")
                        .resource("Test", format!("r{n}"))
                        .build(),
                )
                .unwrap();
        }
        store.flush_timeout(Duration::from_secs(10)).await.unwrap();
        // The readiness probe shakes hands with the same trust.
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.readiness() != audit_sdk::Readiness::Ready {
            assert!(
                Instant::now() < deadline,
                "{transport:?}: {:?}",
                store.readiness()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.close().await;

        let page: Value = https_client(&ca)
            .get(format!("{base}/api/v1/audit/events?correlation_id={corr}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["data"].as_array().unwrap().len(), 10, "{transport:?}");
    }

    // Without the CA: the query client is refused, and the SDK delivers nothing.
    let err = reqwest::get(format!("{base}/readyz")).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let untrusting = AuditStore::new(sdk(&base, None, TransportKind::Http)).unwrap();
    untrusting
        .record(
            AuditEvent::builder("test.tls.recorded", "corr-untrusted")
                .category("test")
                .action("untrusted")
                .actor("service", "tls-test")
                .resource("Test", "r")
                .build(),
        )
        .unwrap();
    assert!(untrusting
        .flush_timeout(Duration::from_millis(500))
        .await
        .is_err());
    assert!(
        !untrusting.readiness().is_serving(),
        "{:?}",
        untrusting.readiness()
    );

    // Rotation without a restart: a new serial is served to new connections.
    let second = ca.leaf(2);
    second.install(certs.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = https_client(&ca)
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap();
        let served = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .unwrap()
            .to_vec();
        if served == second.der() {
            break;
        }
        assert_eq!(served, first.der());
        assert!(
            Instant::now() < deadline,
            "rotated certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The untrusting store still holds its event: nothing was lost, only undelivered.
    let report = untrusting.close().await;
    println!("untrusting store closed: {report:?}");
    assert_eq!(report.delivered, 0, "{report:?}");
}
