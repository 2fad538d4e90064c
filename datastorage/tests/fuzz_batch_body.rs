//! A mutation fuzzer for batch bodies: cost measurement, parsing, validation
//! and canonicalisation (JCS), on the stable toolchain, so that it runs in
//! `make test` everywhere.
//!
//! Its coverage-guided sibling is the cargo-fuzz target in
//! `datastorage/fuzz/` (nightly toolchain; `.ci/fuzz.sh` runs both). This
//! harness is not coverage-guided; it mutates the corpus in
//! `datastorage/fuzz/corpus/batch/` (bytes and JSON-aware: values swapped for
//! unicode, escapes, huge and tiny numbers, deep objects), which libFuzzer's
//! byte mutations rarely reach, and keeps in memory every input whose outcome
//! is new (accepted, or refused naming a new set of fields). Each input must
//! hold the properties of `datastorage/fuzz/properties.rs`:
//!
//! - nothing panics;
//! - the cost pass accepts exactly what serde_json parses;
//! - the typed read of a batch (`AuditEvent::batch_from_json`, the server's
//!   path) answers exactly as reading each event from a `Value` does;
//! - a batch that validates canonicalises to exactly what the reference JCS
//!   implementation (`serde_json_canonicalizer`) gives, and the event read back
//!   from its own JSON (what a store returns) validates again to the same bytes;
//! - a refusal names only indexes of the batch.
//!
//! Budget: `FUZZ_SECONDS` (default 3 under `cargo test`; `.ci/fuzz.sh` runs it
//! longer), seed `FUZZ_SEED` (printed, for replay). With `FUZZ_SAVE=1` new
//! outcomes are written into the corpus folder, which is how it grows.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

#[path = "../fuzz/properties.rs"]
mod properties;
use properties::{check, Outcome, NOW};

/// Inputs longer than this are cut (the server's body limit is far larger;
/// size is not what this looks for).
const MAX_INPUT: usize = 64 * 1024;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/batch")
}

/// xorshift64*: enough randomness for mutations, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "\\",
    "\\u0000",
    "\\ud800",
    "\\udfff",
    "\\u00e9",
    "\\ud83d\\ude00",
    "😀",
    "\u{e000}",
    "1e999",
    "-0",
    "1e-400",
    "18446744073709551616",
    "-9223372036854775809",
    "9007199254740993",
    "0.1",
    "null",
    "true",
    "\"event_data\":",
    "\"event_type\":",
    "\"x\":{\"y\":{\"z\":[[[[[]]]]]}}",
    ":60Z",
    "T23:59:60.999999Z",
    " ",
];

/// A random JSON value of at most `depth` levels.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => {
            let choices = [
                0i64,
                -1,
                i64::MIN,
                i64::MAX,
                (1 << 53) + 1,
                -(1 << 53) - 1,
                rng.next() as i64,
            ];
            Value::from(choices[rng.below(choices.len())])
        }
        3 => {
            let choices = [
                0.1,
                -0.0,
                1e21,
                1e-7,
                5e-324,
                f64::MAX,
                123_456_789.125,
                f64::from_bits(rng.next() & 0x7fef_ffff_ffff_ffff),
            ];
            serde_json::Number::from_f64(choices[rng.below(choices.len())])
                .map_or(Value::Null, Value::Number)
        }
        4 | 5 => {
            let pieces = [
                "a", "é", "😀", "\u{e000}", "\u{1f}", "\"", "\\", "\n", "\u{2028}", "\u{0}", "z",
            ];
            let s: String = (0..rng.below(6))
                .map(|_| pieces[rng.below(pieces.len())])
                .collect();
            Value::String(s)
        }
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "a",
                "b",
                "é",
                "😀",
                "\u{e000}",
                "event_type",
                "",
                "\u{0}",
                "z9",
            ];
            let map: Map<String, Value> = (0..rng.below(4))
                .map(|_| {
                    (
                        keys[rng.below(keys.len())].to_owned(),
                        random_value(rng, depth - 1),
                    )
                })
                .collect();
            Value::Object(map)
        }
    }
}

/// Replaces one random node of `v` (or adds a key to an object) with a random value.
fn mutate_value(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Array(items) if !items.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(items.len());
            mutate_value(rng, &mut items[i]);
        }
        Value::Object(map) if !map.is_empty() && rng.below(4) != 0 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.below(keys.len())];
            if rng.below(8) == 0 {
                map.remove(key);
            } else if let Some(child) = map.get_mut(key) {
                mutate_value(rng, child);
            }
        }
        Value::Object(map) if rng.below(2) == 0 => {
            let fields = [
                "event_id",
                "event_timestamp",
                "duration_ms",
                "retention_days",
                "is_sensitive",
                "actor_ip",
                "parent_event_id",
                "event_data",
                "severity",
                "correlation_id",
            ];
            let field = fields[rng.below(fields.len())];
            map.insert(field.to_owned(), random_value(rng, 3));
        }
        other => *other = random_value(rng, 4),
    }
}

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(7) {
            // JSON-aware: most inputs stay parseable and reach validation.
            0..=2 => {
                if let Ok(mut v) = serde_json::from_slice::<Value>(&out) {
                    mutate_value(rng, &mut v);
                    out = serde_json::to_vec(&v).expect("serialises");
                }
            }
            3 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, token.iter().copied());
            }
            4 if !out.is_empty() => {
                let at = rng.below(out.len());
                let len = rng.below((out.len() - at).min(16) + 1);
                out.drain(at..at + len);
            }
            5 if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] = rng.next() as u8;
            }
            _ => {
                // Splice: the head of this input with the tail of another.
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(out.len() + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out.truncate(MAX_INPUT);
    out
}

#[test]
fn batch_bodies_hold_their_properties_under_mutation() {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let budget = Duration::from_secs(
        std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let save = std::env::var_os("FUZZ_SAVE").is_some();
    let dir = corpus_dir();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut seen = HashSet::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    // Replay: every kept input must still hold.
    for path in &entries {
        let input = std::fs::read(path).unwrap();
        let outcome = catch_unwind(|| check(&input, now))
            .unwrap_or_else(|_| panic!("corpus input {} breaks a property", path.display()));
        seen.insert(outcome);
        corpus.push(input);
    }
    assert!(!corpus.is_empty(), "empty corpus in {}", dir.display());

    let mut rng = Rng(seed);
    let started = Instant::now();
    let (mut cases, mut accepted) = (0u64, 0u64);
    // Panics are caught and reported with the input; keep the default hook quiet.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    while started.elapsed() < budget {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus);
        cases += 1;
        match catch_unwind(AssertUnwindSafe(|| check(&input, now))) {
            Ok(outcome) => {
                if matches!(outcome, Outcome::Accepted(_)) {
                    accepted += 1;
                }
                if seen.insert(outcome) {
                    if save {
                        let name = format!("found-{:016x}.json", rng.next());
                        std::fs::write(dir.join(name), &input).unwrap();
                    }
                    corpus.push(input);
                }
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failure = Some((input, message));
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    println!(
        "fuzz batch body: seed {seed}, {cases} cases in {:.1?} ({accepted} accepted), \
         {} distinct outcomes, corpus {} inputs ({} from the repository)",
        started.elapsed(),
        seen.len(),
        corpus.len(),
        entries.len()
    );
    if let Some((input, message)) = failure {
        let path = std::env::temp_dir().join(format!("fuzz-batch-crash-{seed}.json"));
        std::fs::write(&path, &input).unwrap();
        panic!(
            "property broken ({message}); input saved to {} (add it to {} once fixed)",
            path.display(),
            dir.display()
        );
    }
}
