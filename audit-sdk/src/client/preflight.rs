//! Reachability of DataStorage: the startup preflight and the readiness probe.
//!
//! The reference platform's services started with a wrong Service name and lost
//! every audit event to "no such host" without anyone noticing. Here the first
//! failure produces one ERROR that names the host and says what to check; the
//! probe keeps running (a summary every five minutes, one line on recovery) and
//! its result backs [`crate::AuditStore::is_ready`], which services use to gate
//! their own `/readyz`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::READYZ_PATH;
use crate::shared::Shared;

const REMIND_EVERY: Duration = Duration::from_secs(300);
/// Longest wait for the resolver.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFailure {
    /// The host name does not resolve.
    Dns {
        /// The host.
        host: String,
        /// The resolver's error.
        error: String,
    },
    /// The host resolves but `/readyz` could not be reached.
    Unreachable(String),
    /// `/readyz` answered something other than 200.
    NotReady(u16),
}

/// What to check, in words an operator can act on.
pub fn advice(url: &str, failure: &ProbeFailure, expected_namespace: Option<&str>) -> String {
    match failure {
        ProbeFailure::Dns { host, error } => {
            let mut labels = host.split('.');
            let service = labels.next().unwrap_or(host);
            let namespace = labels
                .next()
                .filter(|ns| *ns != "svc")
                .or(expected_namespace);
            let check = match namespace {
                Some(ns) => format!(
                    "is there a Service named \"{service}\" in namespace \"{ns}\"? (kubectl get service {service} -n {ns})"
                ),
                None => format!("is there a Service named \"{service}\" in this Pod's namespace?"),
            };
            format!("cannot resolve DataStorage host \"{host}\" ({error}) from data_storage_url {url}; {check}")
        }
        ProbeFailure::Unreachable(e) => format!(
            "DataStorage at {url} resolves but cannot be reached ({e}); is its Pod running and Ready, and does the Service's port match?"
        ),
        ProbeFailure::NotReady(status) => format!(
            "DataStorage at {url} answers /readyz with {status}; it is starting, shutting down or cannot reach its database"
        ),
    }
}

/// One probe: resolve the host, then `GET /readyz`.
pub async fn probe(client: &reqwest::Client, base_url: &str) -> Result<(), ProbeFailure> {
    let url = url::Url::parse(base_url).map_err(|e| ProbeFailure::Unreachable(e.to_string()))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    // The resolver runs on a blocking thread that cannot be cancelled; the
    // timeout lets the probe (and close()) move on while it hangs.
    let resolved = match tokio::time::timeout(
        DNS_TIMEOUT,
        tokio::net::lookup_host((host.clone(), port)),
    )
    .await
    {
        Ok(r) => r.map(|addrs| addrs.count()),
        Err(_) => {
            return Err(ProbeFailure::Dns {
                host,
                error: format!("no answer within {DNS_TIMEOUT:?}"),
            })
        }
    };
    match resolved {
        Ok(n) if n > 0 => {}
        Ok(_) => {
            return Err(ProbeFailure::Dns {
                host,
                error: "no addresses".into(),
            })
        }
        Err(e) => {
            return Err(ProbeFailure::Dns {
                host,
                error: e.to_string(),
            })
        }
    }
    let readyz = format!("{}{READYZ_PATH}", base_url.trim_end_matches('/'));
    match client.get(readyz).send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(ProbeFailure::NotReady(resp.status().as_u16())),
        Err(e) => Err(ProbeFailure::Unreachable(e.to_string())),
    }
}

/// The probe's HTTP client: the same trust as delivery (`ca_file` on top of
/// the webpki roots).
fn client(shared: &Shared) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(3));
    if let Some(pem) = crate::transport::read_ca(&shared.config)? {
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| format!("ca_file is not a PEM certificate: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| e.to_string())
}

fn set_probe(shared: &Shared, failing: Option<String>) {
    {
        let mut probe = shared.probe.lock().unwrap_or_else(|p| p.into_inner());
        if failing.is_none() {
            probe.answered_once = true;
        }
        probe.failing = failing;
    }
    metrics::gauge!(crate::metrics::READINESS).set(crate::readiness::evaluate(shared).gauge());
}

/// The probe loop of a store, until it stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let client = match client(&shared) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the audit readiness probe client");
            return;
        }
    };
    let url = shared.config.data_storage_url.clone();
    let mut failing: Option<(Instant, Instant, ProbeFailure)> = None;
    loop {
        match probe(&client, &url).await {
            Ok(()) => {
                set_probe(&shared, None);
                if let Some((since, _, _)) = failing.take() {
                    tracing::info!(%url, after = ?since.elapsed(), "DataStorage is reachable again; audit delivery resumes");
                }
            }
            Err(failure) => {
                let now = Instant::now();
                let text = advice(&url, &failure, shared.config.expected_namespace.as_deref());
                set_probe(&shared, Some(text.clone()));
                let keeping = match &shared.config.spool_dir {
                    Some(dir) => format!("audit events are kept in the spool at {}", dir.display()),
                    None => format!(
                        "audit events are kept in memory (up to {} events, then lost)",
                        shared.config.buffer_capacity
                    ),
                };
                match &mut failing {
                    None => {
                        tracing::error!(%url, "{text}; {keeping} and delivered once it is reachable");
                        failing = Some((now, now, failure));
                    }
                    Some((since, last_log, previous)) => {
                        if *previous != failure || last_log.elapsed() >= REMIND_EVERY {
                            tracing::warn!(%url, failing_for = ?since.elapsed(), "{text}; still retrying");
                            *last_log = now;
                            *previous = failure;
                        }
                    }
                }
            }
        }
        let wait = if failing.is_some() {
            shared.config.probe_interval.min(Duration::from_secs(2))
        } else {
            shared.config.probe_interval
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_advice_names_the_service_and_namespace() {
        let text = advice(
            "http://datastorage.kubernaut-system.svc.cluster.local:8080",
            &ProbeFailure::Dns {
                host: "datastorage.kubernaut-system.svc.cluster.local".into(),
                error: "no such host".into(),
            },
            None,
        );
        assert!(
            text.contains("Service named \"datastorage\" in namespace \"kubernaut-system\""),
            "{text}"
        );
        assert!(
            text.contains("kubectl get service datastorage -n kubernaut-system"),
            "{text}"
        );
    }

    #[test]
    fn a_bare_name_uses_the_expected_namespace() {
        let text = advice(
            "http://datastorage:8080",
            &ProbeFailure::Dns {
                host: "datastorage".into(),
                error: "x".into(),
            },
            Some("kubernaut-system"),
        );
        assert!(text.contains("namespace \"kubernaut-system\""), "{text}");
    }

    #[tokio::test]
    async fn an_invalid_tld_fails_at_dns() {
        let client = reqwest::Client::new();
        let err = probe(&client, "http://data-storage-service.invalid:8080")
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeFailure::Dns { .. }), "{err:?}");
    }
}
