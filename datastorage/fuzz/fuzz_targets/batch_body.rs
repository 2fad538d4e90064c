//! libFuzzer over batch bodies: every input must hold the properties of
//! `../properties.rs` (no panic, cost pass = parser, typed read = `Value`
//! read, JCS against the reference, read-back stability, refusals naming
//! indexes of the batch). The seed corpus is `../corpus/batch/`.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

#[path = "../properties.rs"]
mod properties;

fuzz_target!(|body: &[u8]| {
    let now: DateTime<Utc> = properties::NOW.parse().expect("a fixed timestamp");
    properties::check(body, now);
});
