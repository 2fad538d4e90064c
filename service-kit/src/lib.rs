//! What every service of the platform needs around its own API, written once:
//! the three listeners and their graceful shutdown ([`listeners`],
//! [`shutdown`]), a health port that answers before the service is built
//! ([`early_health`]), the lifecycle `/readyz` reports ([`readiness`]), logs
//! ([`logging`]), request metrics ([`http_metrics`]) and TLS on the API port
//! with certificates re-read as they rotate ([`tls`]), and reading a JSON
//! request body with each failure named ([`json_body`]).
//!
//! DataStorage and the Gateway differ in what they serve, not in how they start,
//! drain and report; keeping that here means a fix to shutdown ordering or to
//! TCP settings reaches both.

pub mod early_health;
pub mod http_metrics;
pub mod json_body;
pub mod listeners;
pub mod logging;
pub mod readiness;
pub mod shutdown;
#[cfg(feature = "test-support")]
pub mod test_ca;
pub mod tls;
