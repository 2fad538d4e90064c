//! The client runtime: the `AuditStore` handle, its intake, batching and
//! delivery tasks, the disk spool, the transports and the start-up preflight.
//! Nothing here is part of the wire contract; it is how a service gets its
//! events to DataStorage without losing any silently.

pub(crate) mod backlog;
pub mod config;
pub(crate) mod delivery;
pub mod errors;
pub(crate) mod inbox;
pub(crate) mod intake;
pub mod metrics;
pub mod preflight;
pub mod readiness;
pub(crate) mod shared;
pub mod spool;
pub(crate) mod store;
pub mod token;
pub mod transport;
