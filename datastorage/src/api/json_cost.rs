//! What a JSON body will cost in memory once parsed, found without parsing it.
//!
//! A `serde_json::Value` tree costs far more than its text: `{"a":0}` is 8
//! bytes on the wire and a B-tree node of ~640 bytes once parsed, so 5 MiB of
//! tiny objects becomes ~450 MB. This pass walks the text with a visitor that
//! allocates nothing (strings are only measured; escaped ones are unescaped
//! into serde_json's scratch buffer) and adds up the heap the tree would take,
//! modelled on serde_json's own representation: a `Value` slot is 32 bytes,
//! arrays grow by doubling from 4, an object is a `BTreeMap` whose leaves hold
//! at most 11 entries and are about half full after splits, and every
//! allocation pays the allocator's 16-byte header and rounding. The estimate is
//! an upper bound on what parsing allocates (a test with a counting allocator
//! checks it), so the server can reserve it before it parses anything.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;

/// Size of one `serde_json::Value`.
const SLOT: u64 = 32;
/// One `BTreeMap<String, Value>` leaf (11 keys and values, links, lengths),
/// rounded up to the allocator's size class.
const MAP_NODE: u64 = 640;
/// An internal node adds 12 child pointers.
const MAP_INTERNAL_NODE: u64 = 736;
/// Entries per node once the tree has split (nodes split at 11 into 5 + 6).
const ENTRIES_PER_NODE: u64 = 5;

/// The measured shape of a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonCost {
    /// Heap bytes the parsed `Value` tree takes (including the top-level slot).
    pub bytes: u64,
    /// Items of the top-level array (`None` when the document is not an array).
    pub items: Option<usize>,
}

/// Measures `text` as JSON, counting at most `max_items` top-level array
/// items at full cost (the rest are only counted, so an oversized batch is
/// refused by count without its cost being the error). Malformed JSON, or
/// nesting past serde_json's recursion limit, is the parser's own error.
pub fn measure(text: &[u8], max_items: usize) -> Result<JsonCost, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let cost = (&mut de).deserialize_any(TopVisitor { max_items })?;
    de.end()?;
    Ok(cost)
}

/// Heap bytes of one allocation of `n` bytes (none for zero).
fn alloc(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        (n + 8).div_ceil(16) * 16 + 16
    }
}

/// A `Vec<Value>` of `n` items grown by pushing.
fn vec_slots(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        alloc(n.max(4).next_power_of_two() * SLOT)
    }
}

/// The nodes of a `BTreeMap<String, Value>` of `n` entries.
fn map_nodes(n: u64) -> u64 {
    match n {
        0 => 0,
        1..=11 => MAP_NODE,
        _ => {
            let leaves = n.div_ceil(ENTRIES_PER_NODE);
            leaves * MAP_NODE + leaves.div_ceil(ENTRIES_PER_NODE) * MAP_INTERNAL_NODE
        }
    }
}

/// The heap a value takes beyond its own slot.
struct ValueCost;

impl<'de> DeserializeSeed<'de> for ValueCost {
    type Value = u64;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueCost {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_i64<E>(self, _: i64) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_u64<E>(self, _: u64) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_f64<E>(self, _: f64) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_str<E>(self, s: &str) -> Result<u64, E> {
        Ok(alloc(s.len() as u64))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let (mut n, mut inner) = (0u64, 0u64);
        while let Some(cost) = seq.next_element_seed(ValueCost)? {
            n += 1;
            inner += cost;
        }
        Ok(vec_slots(n) + inner)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let (mut n, mut inner) = (0u64, 0u64);
        while let Some(key) = map.next_key_seed(ValueCost)? {
            n += 1;
            inner += key + map.next_value_seed(ValueCost)?;
        }
        Ok(map_nodes(n) + inner)
    }
}

/// The document itself: a top-level array is counted item by item.
struct TopVisitor {
    max_items: usize,
}

impl<'de> Visitor<'de> for TopVisitor {
    type Value = JsonCost;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonCost, A::Error> {
        let (mut n, mut inner) = (0usize, 0u64);
        while n < self.max_items {
            match seq.next_element_seed(ValueCost)? {
                Some(cost) => {
                    n += 1;
                    inner += cost;
                }
                None => {
                    return Ok(JsonCost {
                        bytes: SLOT + vec_slots(n as u64) + inner,
                        items: Some(n),
                    })
                }
            }
        }
        // Past the limit only the count matters: the batch is refused by it.
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(JsonCost {
            bytes: SLOT + vec_slots(n as u64) + inner,
            items: Some(n),
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JsonCost, A::Error> {
        Ok(JsonCost {
            bytes: SLOT + ValueCost.visit_map(map)?,
            items: None,
        })
    }
    fn visit_str<E>(self, s: &str) -> Result<JsonCost, E> {
        Ok(JsonCost {
            bytes: SLOT + alloc(s.len() as u64),
            items: None,
        })
    }
    fn visit_bool<E>(self, _: bool) -> Result<JsonCost, E> {
        Ok(scalar())
    }
    fn visit_i64<E>(self, _: i64) -> Result<JsonCost, E> {
        Ok(scalar())
    }
    fn visit_u64<E>(self, _: u64) -> Result<JsonCost, E> {
        Ok(scalar())
    }
    fn visit_f64<E>(self, _: f64) -> Result<JsonCost, E> {
        Ok(scalar())
    }
    fn visit_unit<E>(self) -> Result<JsonCost, E> {
        Ok(scalar())
    }
}

fn scalar() -> JsonCost {
    JsonCost {
        bytes: SLOT,
        items: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_objects_cost_far_more_than_their_text() {
        let text = format!("[{}]", vec![r#"{"a":0}"#; 1000].join(","));
        let cost = measure(text.as_bytes(), 10_000).unwrap();
        assert_eq!(cost.items, Some(1000));
        // ~8 bytes of text, ~700 bytes parsed, per object.
        assert!(cost.bytes > 600 * 1000, "{cost:?}");
    }

    #[test]
    fn items_past_the_limit_are_counted_not_costed() {
        let text = format!(
            "[{}]",
            vec![r#"{"a":"xxxxxxxxxxxxxxxxxxxx"}"#; 100].join(",")
        );
        let full = measure(text.as_bytes(), 100).unwrap();
        let capped = measure(text.as_bytes(), 10).unwrap();
        assert_eq!(full.items, Some(100));
        assert_eq!(capped.items, Some(100));
        assert!(capped.bytes < full.bytes / 5);
    }

    #[test]
    fn malformed_and_too_deep_documents_are_parse_errors() {
        assert!(measure(b"[{\"a\":}]", 10).is_err());
        assert!(measure(b"[1] x", 10).is_err());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(measure(deep.as_bytes(), 10).is_err());
    }

    #[test]
    fn scalars_and_strings() {
        assert_eq!(measure(b"1", 1).unwrap().bytes, SLOT);
        assert_eq!(measure(b"\"\"", 1).unwrap().bytes, SLOT);
        assert!(measure(b"\"abc\"", 1).unwrap().bytes > SLOT);
        assert_eq!(measure(b"{}", 1).unwrap().items, None);
    }
}
