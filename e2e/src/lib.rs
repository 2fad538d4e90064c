//! End-to-end support for the audit pipeline.
//!
//! - [`preflight`] checks rendered Kubernetes manifests for the misconfigurations
//!   that broke the reference platform (a URL naming a Service that does not
//!   exist, a host `KUBECONFIG` leaking into a Pod, a caller without the RBAC
//!   verb it needs, …) before any cluster exists.
//! - [`platform`] runs the whole stack as local processes or in a Kind cluster
//!   behind one trait, and [`scenarios`] is the suite that drives either.

pub mod bench_table;
pub mod platform;
pub mod preflight;
pub mod progress;
pub mod scenarios;
pub mod suite;
pub mod summary;
