//! End-to-end support for the audit pipeline.
//!
//! [`preflight`] checks rendered Kubernetes manifests for the misconfigurations
//! that broke the reference platform (a URL naming a Service that does not
//! exist, a host `KUBECONFIG` leaking into a Pod, a caller without the RBAC
//! verb it needs, …) before any cluster exists.

pub mod preflight;
