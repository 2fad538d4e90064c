//! Test support shared by the integration tests and the benches (cargo feature
//! `test-support`; never part of the service binary).

pub mod bench;
pub mod pg;
pub mod ports;
