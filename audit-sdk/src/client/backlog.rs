//! Events waiting for delivery: in memory, or in the disk spool.
//!
//! The intake task appends, the delivery task takes batches from the front and
//! acknowledges them; both see the same FIFO, so events are delivered in the
//! order they were recorded (spooled events of earlier processes first).

use std::collections::VecDeque;
use std::io;

use crate::event::AuditEvent;
use crate::spool::{Position, RawBatch, Spool};

/// A batch taken for delivery: its events, the mark to acknowledge them by
/// (spool only), and the number of damaged records skipped on the way (lost,
/// but resolved with the batch so `flush()` accounting holds).
pub type Taken = (Vec<AuditEvent>, Option<Position>, u64);

/// What [`Backlog::start_take`] found.
#[derive(Debug)]
pub enum Taking {
    /// Taken whole (memory).
    Done(Taken),
    /// Spool records to parse, ending at the mark.
    Parse(RawBatch, Position),
}

/// The FIFO of undelivered events.
#[derive(Debug)]
pub enum Backlog {
    /// Memory only (no `spool_dir`).
    Memory(MemoryQueue),
    /// Write-ahead disk spool.
    Spool(Box<Spool>),
}

impl Backlog {
    /// Events not yet taken by delivery.
    pub fn available(&self) -> u64 {
        match self {
            Self::Memory(q) => q.len as u64,
            Self::Spool(s) => s.unread(),
        }
    }

    /// Appends what fits; returns how many were taken (memory takes everything:
    /// its bound is enforced by `record()`).
    pub fn push(&mut self, events: &mut Vec<AuditEvent>) -> io::Result<usize> {
        match self {
            Self::Memory(q) => {
                let n = events.len();
                q.push(std::mem::take(events));
                Ok(n)
            }
            Self::Spool(s) => {
                let n = s.append(events)?;
                events.drain(..n);
                Ok(n)
            }
        }
    }

    /// Starts taking up to `max` events from the front for delivery: memory
    /// hands its events over at once, the spool reads its records without
    /// parsing them. [`crate::shared::Shared::take_batch`] parses them with
    /// the backlog unlocked (a batch's parse takes milliseconds, which a
    /// spool write and its durable waiters would otherwise wait for).
    pub fn start_take(&mut self, max: usize) -> io::Result<Taking> {
        match self {
            Self::Memory(q) => Ok(Taking::Done((q.take(max), None, 0))),
            Self::Spool(s) => {
                let raw = s.read_records(max)?;
                Ok(Taking::Parse(raw, s.read_position()))
            }
        }
    }

    /// Marks a taken batch of `count` events, ending at `mark`, as resolved
    /// (delivered or set aside). Batches are acknowledged in the order taken.
    pub fn ack(&mut self, mark: Option<Position>, count: u64) -> io::Result<()> {
        match (self, mark) {
            (Self::Spool(s), Some(to)) => s.ack_to(to, count),
            _ => Ok(()),
        }
    }

    /// The spool, when there is one.
    pub fn spool(&mut self) -> Option<&mut Spool> {
        match self {
            Self::Memory(_) => None,
            Self::Spool(s) => Some(s),
        }
    }
}

/// The memory FIFO: the intake's bursts as they arrived, so appending a burst
/// moves no event (the intake hands over the vector `record()` filled) and
/// the queue never regrows one huge buffer while DataStorage is away.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    bursts: VecDeque<VecDeque<AuditEvent>>,
    /// Events in all bursts.
    len: usize,
}

impl MemoryQueue {
    fn push(&mut self, mut burst: Vec<AuditEvent>) {
        if burst.is_empty() {
            return;
        }
        // The inbox vectors are sized for the larger recent bursts (see
        // `crate::inbox`): one mostly empty is not kept at its size while
        // DataStorage is away, so memory stays within 4 × the events held.
        if burst.capacity() > 4 * burst.len() {
            burst.shrink_to_fit();
        }
        self.len += burst.len();
        // `VecDeque::from(Vec)` keeps the vector's buffer.
        self.bursts.push_back(burst.into());
    }

    fn take(&mut self, max: usize) -> Vec<AuditEvent> {
        let mut out = Vec::with_capacity(max.min(self.len));
        while out.len() < max {
            let Some(front) = self.bursts.front_mut() else {
                break;
            };
            let n = front.len().min(max - out.len());
            out.extend(front.drain(..n));
            if front.is_empty() {
                self.bursts.pop_front();
            }
        }
        self.len -= out.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(from: usize, n: usize) -> Vec<AuditEvent> {
        (from..from + n)
            .map(|i| {
                AuditEvent::builder("test.event", format!("c-{i}"))
                    .category("test")
                    .action("made")
                    .build()
            })
            .collect()
    }

    #[test]
    fn memory_queue_takes_across_bursts_in_order() {
        let mut backlog = Backlog::Memory(MemoryQueue::default());
        let mut all = Vec::new();
        for (from, n) in [(0, 3), (3, 0), (3, 5), (8, 1)] {
            let mut burst = events(from, n);
            all.extend(burst.iter().map(|e| e.correlation_id.clone()));
            assert_eq!(backlog.push(&mut burst).unwrap(), n);
            assert!(burst.is_empty());
        }
        assert_eq!(backlog.available(), 9);
        let mut taken = Vec::new();
        for want in [2, 4, 10, 1] {
            let Taking::Done((batch, mark, skipped)) = backlog.start_take(want).unwrap() else {
                panic!("memory takes whole");
            };
            assert!(mark.is_none() && skipped == 0);
            assert!(batch.len() <= want);
            taken.extend(batch.into_iter().map(|e| e.correlation_id));
        }
        assert_eq!(taken, all);
        assert_eq!(backlog.available(), 0);
    }
}
