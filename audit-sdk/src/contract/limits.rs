//! Every bound of the event contract, in one place.
//!
//! The server's validation, the client's validation, the OpenAPI document and the
//! tests all read these constants, so changing a limit is a one-line change.

use std::time::Duration;

/// The only contract version this crate speaks.
pub const CONTRACT_VERSION: &str = "1.0";
/// Maximum length of `event_type`.
pub const EVENT_TYPE_MAX_LEN: usize = 100;
/// Maximum length of `event_category`.
pub const EVENT_CATEGORY_MAX_LEN: usize = 50;
/// Maximum length of `event_action`.
pub const EVENT_ACTION_MAX_LEN: usize = 50;
/// Maximum length of `correlation_id` (it must also be non-empty).
pub const CORRELATION_ID_MAX_LEN: usize = 255;
/// Maximum length of `actor_type`, `resource_type` and `severity`.
pub const SHORT_TEXT_MAX_LEN: usize = 100;
/// Maximum length of identifiers: `actor_id`, `resource_id`, `cluster_id`, `error_code`.
pub const ID_TEXT_MAX_LEN: usize = 255;
/// Maximum length of `namespace` (a Kubernetes namespace name is at most 63, but
/// namespaced paths such as `ns/name` are accepted too).
pub const NAMESPACE_MAX_LEN: usize = 253;
/// Maximum length of `error_message`.
pub const ERROR_MESSAGE_MAX_LEN: usize = 4096;
/// Smallest accepted `retention_days`.
pub const RETENTION_DAYS_MIN: u32 = 1;
/// Largest accepted `retention_days` (seven years), also the default.
pub const RETENTION_DAYS_MAX: u32 = 2555;
/// Maximum size of `event_data`, serialised as compact JSON.
pub const EVENT_DATA_MAX_BYTES: usize = 256 * 1024;
/// Maximum nesting depth of `event_data` (the object itself is depth 1).
pub const EVENT_DATA_MAX_DEPTH: usize = 10;
/// How far in the future an `event_timestamp` may lie (clock skew allowance).
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(60 * 60);
/// How old an `event_timestamp` may be (long enough for a spool to be replayed
/// after a week-end outage).
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
