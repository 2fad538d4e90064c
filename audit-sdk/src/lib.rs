//! The audit event contract shared by every service of the remediation platform.
//!
//! DataStorage validates incoming events with exactly the code that clients use
//! before sending them, so a client and the server can never disagree about what
//! a valid event is. This crate holds:
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

pub mod api;
pub mod event;
pub mod limits;
pub mod problem;
pub mod timestamp;
pub mod validation;

pub use event::{AuditEvent, AuditEventBuilder, EventOutcome, StoredEvent};
pub use problem::{FieldError, Problem};
pub use validation::ValidationErrors;
