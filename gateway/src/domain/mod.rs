//! What a signal is and what the Gateway does with it, free of HTTP and of any
//! particular RemediationRequest backend.
//!
//! [`signal`] parses AlertManager webhooks and Kubernetes events into one
//! [`Signal`](signal::Signal) type, [`fingerprint`] names its target, and
//! [`intake`] applies the deduplication rule against a backend and audits each step.

pub mod fingerprint;
pub mod intake;
pub mod signal;
