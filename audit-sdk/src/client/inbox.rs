//! The vectors `record()` pushes into, prepared by the intake so that a
//! producer never faults fresh memory in.
//!
//! A vector of thousands of events is fresh memory from the kernel, and the
//! producers' pushes would fault it in a page (about nine events) at a time:
//! on a VM each fault costs microseconds, and they made up a third to a half
//! of `record()`'s time in the SDK bench. So the intake hands the producers
//! a vector whose memory is already in (one written slot per page, on the
//! blocking pool), sized for the bursts it has seen, and with a spool it
//! reuses the vector the last burst was written from (its pages are in, and
//! it is empty once on disk). A vector too small for its burst would regrow
//! under the inbox lock, copying and faulting the new part in; sizing for a
//! decaying maximum of recent bursts keeps one smaller burst from shrinking
//! the next vector.

use std::mem::MaybeUninit;

use crate::event::AuditEvent;
use crate::shared::Shared;

/// Fewest events an inbox vector is made for.
const MIN_EVENTS: usize = 64;

/// Most events an inbox vector is made for: bursts beyond it regrow the
/// vector (16,384 events are about 7 MB).
const MAX_EVENTS: usize = 16 * 1024;

/// Bursts to expect: the largest recent one, forgetting a quarter of it per
/// smaller burst, so a lull shrinks the prepared vectors within a few dozen
/// bursts while an uneven stream keeps the size of its larger bursts.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BurstSize(usize);

impl BurstSize {
    /// Takes a burst of `events` into account (the intake's turns that
    /// found the inbox empty are not bursts).
    pub fn saw(&mut self, events: usize) {
        if events == 0 {
            return;
        }
        self.0 = events.max(self.0 - self.0 / 4);
    }

    /// Capacity of the vector for the next burst (0 before any burst).
    pub fn capacity(self) -> usize {
        if self.0 == 0 {
            return 0;
        }
        self.0.next_power_of_two().clamp(MIN_EVENTS, MAX_EVENTS)
    }
}

/// An empty vector of `capacity` events, its memory already faulted in.
pub(crate) fn fresh(capacity: usize) -> Vec<AuditEvent> {
    let mut buffer = Vec::with_capacity(capacity);
    let per_page = (4096 / std::mem::size_of::<AuditEvent>()).max(1);
    for slot in buffer.spare_capacity_mut().iter_mut().step_by(per_page) {
        *slot = MaybeUninit::zeroed();
    }
    buffer
}

/// The next spare vector for bursts needing `capacity`, made on the blocking
/// pool: `written` (the vector a burst was just spooled from) when it is
/// empty and of about that size, else a fresh one. When the inbox itself is
/// still empty and smaller (after a drain that found no spare, as the first
/// one), the producers get it at once and a second one is made for the spare.
pub(crate) fn refill(
    shared: &Shared,
    capacity: usize,
    written: &mut Vec<AuditEvent>,
) -> Vec<AuditEvent> {
    let reusable =
        written.is_empty() && (capacity..=capacity.saturating_mul(4)).contains(&written.capacity());
    let first = if reusable {
        std::mem::take(written)
    } else {
        fresh(capacity)
    };
    match shared.offer_inbox(first) {
        Some(kept) => kept,
        None => fresh(capacity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_smaller_burst_does_not_shrink_the_next_vector() {
        let mut size = BurstSize::default();
        assert_eq!(size.capacity(), 0);
        size.saw(4_000);
        assert_eq!(size.capacity(), 4_096);
        size.saw(1_000);
        size.saw(0);
        assert_eq!(size.capacity(), 4_096, "3,000 expected after one lull");
        for _ in 0..40 {
            size.saw(1);
        }
        assert_eq!(size.capacity(), MIN_EVENTS, "a long lull forgets the peak");
        size.saw(1_000_000);
        assert_eq!(size.capacity(), MAX_EVENTS);
    }

    #[test]
    fn a_fresh_vector_is_empty_with_the_capacity_asked() {
        let v = fresh(1_000);
        assert!(v.is_empty());
        assert!(v.capacity() >= 1_000);
    }
}
