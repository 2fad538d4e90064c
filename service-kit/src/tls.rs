//! TLS on the API listener (`server.tls`), with certificates that follow the
//! files as a mounted Secret rotates.
//!
//! Kubernetes updates a mounted Secret by swapping a symlink (`..data`), so a
//! file watcher would have to follow renames of a parent directory; instead a
//! task re-reads the two PEM files every `reload_interval` and, when their
//! bytes changed, parses them and swaps the certificate that new handshakes
//! get ([`ReloadingCert`], a rustls `ResolvesServerCert`). Connections already
//! open keep theirs. A pair that does not parse, or whose key does not match
//! its certificate (a rotation caught half-written), is refused with one
//! ERROR and the previous certificate stays in service; start-up with a bad
//! pair fails, so a wrong path never serves plain text or nothing.
//!
//! Handshakes run on their own tasks with a deadline ([`TlsListener`]), so a
//! client that connects and stays silent never holds up the accept loop.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// `server.tls`: serve the API port over https when both files are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (a Secret's `tls.crt`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the leaf (a Secret's `tls.key`): PKCS#8, PKCS#1 or SEC1.
    pub key_file: Option<PathBuf>,
    /// How often the files are re-read for a rotated certificate.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Longest time a client may take to complete its handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            reload_interval: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of the two files is configured.
    #[error("server.tls needs both cert_file and key_file (only {0} is set)")]
    Incomplete(&'static str),
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The files do not hold a usable certificate and key.
    #[error("{0}")]
    Invalid(String),
}

impl TlsConfig {
    /// Whether TLS is configured (both files set); one file alone is an error.
    pub fn enabled(&self) -> Result<bool, TlsError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), Some(_)) => Ok(true),
            (None, None) => Ok(false),
            (Some(_), None) => Err(TlsError::Incomplete("cert_file")),
            (None, Some(_)) => Err(TlsError::Incomplete("key_file")),
        }
    }

    /// The URL scheme clients must use for this configuration.
    pub fn scheme(&self) -> &'static str {
        match self.enabled() {
            Ok(true) => "https",
            _ => "http",
        }
    }
}

/// The two files as last read.
#[derive(PartialEq, Eq)]
struct PemPair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// A server certificate that a background task replaces when its files change.
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Bytes behind `current`, or of the last refused pair (so a broken
    /// rotation is logged once, not every interval).
    last_seen: RwLock<PemPair>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the pair; an error names the file and what is wrong.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        let pair = read_pair(cert_file, key_file)?;
        let key = parse_pair(&pair)?;
        Ok(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(Arc::new(key)),
            last_seen: RwLock::new(pair),
        })
    }

    /// Hex SHA-256 of the leaf certificate in service.
    pub fn fingerprint(&self) -> String {
        leaf_fingerprint(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Re-reads the files; swaps the certificate when they changed and parse.
    /// Returns whether a new certificate is now in service.
    pub fn reload(&self) -> bool {
        let pair = match read_pair(&self.cert_file, &self.key_file) {
            Ok(pair) => pair,
            Err(e) => {
                // A Secret being swapped can be briefly unreadable; the next
                // interval sees the finished files.
                tracing::warn!(error = %e, "TLS certificate files unreadable; keeping the certificate in service");
                return false;
            }
        };
        if *self.last_seen.read().unwrap_or_else(|p| p.into_inner()) == pair {
            return false;
        }
        let parsed = parse_pair(&pair);
        *self.last_seen.write().unwrap_or_else(|p| p.into_inner()) = pair;
        match parsed {
            Ok(key) => {
                let fingerprint = leaf_fingerprint(&key);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                tracing::info!(cert_file = %self.cert_file.display(), %fingerprint, "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(
                    cert_file = %self.cert_file.display(),
                    key_file = %self.key_file.display(),
                    error = %e,
                    in_service = %self.fingerprint(),
                    "new TLS certificate refused; the previous one stays in service"
                );
                false
            }
        }
    }

    /// Reloads every `interval` until `stop`.
    pub fn watch(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate: just loaded
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let this = self.clone();
                // File reads off the runtime's worker threads.
                if let Err(e) = tokio::task::spawn_blocking(move || this.reload()).await {
                    tracing::error!(error = %e, "TLS certificate reload panicked");
                }
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn read_pair(cert_file: &Path, key_file: &Path) -> Result<PemPair, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok(PemPair {
        cert: read(cert_file)?,
        key: read(key_file)?,
    })
}

fn parse_pair(pair: &PemPair) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_slice_iter(&pair.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid(format!("cert_file is not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(
            "cert_file holds no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&pair.key)
        .map_err(|e| TlsError::Invalid(format!("key_file is not a PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| TlsError::Invalid(format!("certificate and key do not go together: {e}")))?;
    Ok(certified)
}

fn leaf_fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|c| hex::encode(Sha256::digest(c.as_ref())))
        .unwrap_or_default()
}

/// The rustls server configuration around `cert`: TLS 1.2 and 1.3, ALPN h2
/// (gRPC) and http/1.1, no client certificates.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Loads `config`'s files and starts watching them until `stop`; `None` when
/// TLS is not configured.
pub fn acceptor(
    config: &TlsConfig,
    stop: CancellationToken,
) -> Result<Option<(TlsAcceptor, Arc<ReloadingCert>)>, TlsError> {
    if !config.enabled()? {
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        return Ok(None);
    };
    let cert = Arc::new(ReloadingCert::load(cert_file, key_file)?);
    tracing::info!(cert_file = %cert_file.display(), fingerprint = %cert.fingerprint(), "API port serves TLS");
    cert.clone().watch(config.reload_interval, stop);
    let acceptor = TlsAcceptor::from(Arc::new(server_config(cert.clone())?));
    Ok(Some((acceptor, cert)))
}

/// A listener whose connections are TLS-handshaken on their own tasks;
/// `accept` hands out finished ones.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    /// Stops the accept task when the listener is dropped.
    _stop: tokio_util::sync::DropGuard,
}

impl TlsListener {
    /// Accepts on `tcp` and handshakes with `acceptor`, each within `timeout`.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor, timeout: Duration) -> io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off as axum does.
                            tracing::warn!(error = %e, "accepting a TLS connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local_addr,
            _stop: stop.drop_guard(),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
