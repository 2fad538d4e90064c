//! DataStorage: the central audit event store.
//!
//! Layers, outermost first: [`api`] (HTTP handlers, RFC 7807 mapping) →
//! [`domain`] (ingest rules, hash chains, queries) → [`store`] (persistence
//! backends behind one trait). [`startup`] wires them from [`config`];
//! `main.rs` only parses the command line.

pub mod api;
pub mod checkpointer;
pub mod config;
pub mod domain;
pub mod startup;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
