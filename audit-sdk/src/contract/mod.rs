//! The wire contract: what an audit event is, how it is validated, and the
//! bodies and problem documents of the DataStorage API. DataStorage depends on
//! this half of the crate only, so the server validates with the very code
//! every client runs before sending.

pub mod api;
pub(crate) mod clock;
pub mod event;
pub mod limits;
pub mod payload;
pub mod problem;
pub mod proto;
pub mod timestamp;
pub mod validation;
