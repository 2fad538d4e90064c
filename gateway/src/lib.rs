//! Gateway: turns signals (AlertManager alerts, Kubernetes Warning events) into
//! deduplicated RemediationRequests and audits every step.
//!
//! Layers, outermost first: [`api`] (HTTP admission and answers, RFC 7807) →
//! [`domain`] (one `Signal` type, fingerprints, the deduplication rule) →
//! [`remediation`] (RemediationRequest backends: Kubernetes CRD or memory).
//! [`audit`] builds the audit events; [`startup`] wires everything
//! from [`config`]; `main.rs` only parses the command line.

pub mod api;
pub mod audit;
pub mod config;
pub mod domain;
pub mod remediation;
pub mod startup;
pub mod telemetry;
