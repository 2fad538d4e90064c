//! The audit event contract and the client library of the remediation
//! platform. Its promise: no audit event is ever lost silently.
//!
//! Services record through an [`AuditStore`] (non-blocking `record()`,
//! background batching, retries that never give up, an optional durable disk
//! spool, honest `flush()` / `close()`; see the crate README). DataStorage
//! validates incoming events with exactly the code that clients use before
//! sending them, so a client and the server can never disagree about what a
//! valid event is. The contract lives in:
//!
//! - [`event`]: the event as it travels on the wire ([`AuditEvent`]) and as it is
//!   stored ([`StoredEvent`]);
//! - [`validation`]: the rules, reporting every problem of an event at once;
//! - [`limits`]: every bound of the contract, defined once;
//! - [`api`]: request and response bodies of the DataStorage REST API;
//! - [`problem`]: RFC 7807 problem documents and their stable type slugs.
//!
//! ```
//! use audit_sdk::{AuditEvent, EventOutcome};
//!
//! let event = AuditEvent::builder("gateway.signal.received", "rr-0123456789ab-abcdefgh")
//!     .category("gateway")
//!     .action("received")
//!     .outcome(EventOutcome::Success)
//!     .actor("service", "gateway")
//!     .resource("Deployment", "payments/api")
//!     .data("signal_name", "HighMemory")
//!     .build();
//! assert!(event.validate().is_ok());
//! ```

mod client;
mod contract;
pub mod names;

// Public paths stay flat (`audit_sdk::event`, `audit_sdk::spool`, ...): the
// folders are how the crate is read, not how it is imported.
pub(crate) use client::{backlog, delivery, inbox, intake, shared, store};
pub use client::{config, errors, metrics, preflight, readiness, spool, token, transport};
pub use contract::{api, event, limits, payload, problem, proto, timestamp, validation};

// The README's examples compile as doctests, so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use config::{AuditConfig, FsyncPolicy, TransportKind};
pub use errors::{CloseReport, DurableError, FlushError, RecordError, SyncError};
pub use event::{AuditEvent, AuditEventBuilder, EventOutcome, StoredEvent};
pub use problem::{FieldError, Problem};
pub use readiness::Readiness;
pub use store::{AuditStore, StartError};
pub use validation::ValidationErrors;
