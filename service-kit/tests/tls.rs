//! TLS on the API listener with a test CA (rcgen): served over https to a
//! client that trusts the CA, refused by one that does not, a rotated
//! certificate (new serial) picked up without a restart, and a broken rotation
//! refused while the previous certificate stays in service.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use service_kit::listeners::{Drain, Listeners, Routers};
use service_kit::readiness::Readiness;
use service_kit::test_ca::TestCa;
use service_kit::tls::{ReloadingCert, TlsConfig};
use tokio_util::sync::CancellationToken;

fn client(ca_pem: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_info(true)
        .timeout(Duration::from_secs(5));
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// The DER of the certificate the server presented.
async fn served_cert(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn the_api_port_serves_https_and_picks_up_a_rotated_certificate() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.leaf(1);
    let (cert_file, key_file) = first.install(dir.path());
    let tls = TlsConfig {
        cert_file: Some(cert_file),
        key_file: Some(key_file),
        reload_interval: Duration::from_millis(50),
        ..TlsConfig::default()
    };
    let listeners = Listeners::bind([127, 0, 0, 1].into(), 0, 0, 0)
        .await
        .unwrap()
        .with_tls(&tls)
        .unwrap();
    assert_eq!(listeners.api_scheme(), "https");
    let (api, health) = (listeners.api_addr(), listeners.health_addr());
    let router = || Router::new().route("/readyz", get(|| async { "ok" }));
    let stop = CancellationToken::new();
    let readiness = Readiness::default();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move {
            let routers = Routers {
                api: router(),
                health: router(),
                metrics: router(),
            };
            let drain = Drain {
                shutdown_delay: Duration::ZERO,
                drain_timeout: Duration::from_secs(2),
            };
            listeners
                .serve_until(routers, &readiness, stop, drain, "test")
                .await
        }
    });
    let url = format!("https://localhost:{}/readyz", api.port());
    let trusting = client(Some(&ca.pem));
    assert_eq!(served_cert(&trusting, &url).await, first.der());

    // A client without the CA is refused; plain HTTP on the API port gets nothing.
    let err = client(None).get(&url).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(
        reqwest::get(format!("http://127.0.0.1:{}/readyz", api.port()))
            .await
            .is_err()
    );
    // Health stays plain HTTP for kubelet probes.
    assert_eq!(
        reqwest::get(format!("http://{health}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );

    // Rotation: new serial, same files, no restart.
    let second = ca.leaf(2);
    second.install(dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A fresh client: an open connection keeps the certificate it shook hands with.
        if served_cert(&client(Some(&ca.pem)), &url).await == second.der() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotated certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    server.await.unwrap();
}

#[test]
fn a_broken_rotation_keeps_the_certificate_in_service() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.leaf(10);
    let (cert_file, key_file) = first.install(dir.path());
    let cert = ReloadingCert::load(&cert_file, &key_file).unwrap();
    let in_service = cert.fingerprint();
    assert!(!cert.reload(), "unchanged files are not a rotation");

    // Not PEM at all.
    std::fs::write(&cert_file, "garbage").unwrap();
    assert!(!cert.reload());
    assert_eq!(cert.fingerprint(), in_service);
    // A certificate with somebody else's key (a rotation caught half-written).
    let other = ca.leaf(11);
    service_kit::test_ca::Leaf {
        cert: other.cert.clone(),
        key: first.key.clone(),
    }
    .install(dir.path());
    assert!(!cert.reload());
    assert_eq!(cert.fingerprint(), in_service);
    // The complete pair is taken.
    other.install(dir.path());
    assert!(cert.reload());
    assert_ne!(cert.fingerprint(), in_service);

    // At start-up a bad pair is an error naming the problem.
    std::fs::write(&key_file, "not a key").unwrap();
    let err = ReloadingCert::load(&cert_file, &key_file).unwrap_err();
    assert!(err.to_string().contains("key_file"), "{err}");
    let err = TlsConfig {
        cert_file: Some(cert_file),
        ..TlsConfig::default()
    }
    .enabled()
    .unwrap_err();
    assert!(err.to_string().contains("key_file"), "{err}");
}
