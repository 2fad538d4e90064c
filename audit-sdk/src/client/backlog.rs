//! Events waiting for delivery: in memory, or in the disk spool.
//!
//! The intake task appends, the delivery task takes batches from the front and
//! acknowledges them; both see the same FIFO, so events are delivered in the
//! order they were recorded (spooled events of earlier processes first).

use std::collections::VecDeque;
use std::io;

use crate::event::AuditEvent;
use crate::spool::{Position, Spool};

/// The FIFO of undelivered events.
#[derive(Debug)]
pub enum Backlog {
    /// Memory only (no `spool_dir`).
    Memory(VecDeque<AuditEvent>),
    /// Write-ahead disk spool.
    Spool(Box<Spool>),
}

impl Backlog {
    /// Events not yet taken by delivery.
    pub fn available(&self) -> u64 {
        match self {
            Self::Memory(q) => q.len() as u64,
            Self::Spool(s) => s.unread(),
        }
    }

    /// Appends what fits; returns how many were taken (memory takes everything:
    /// its bound is enforced by `record()`).
    pub fn push(&mut self, events: &mut Vec<AuditEvent>) -> io::Result<usize> {
        match self {
            Self::Memory(q) => {
                let n = events.len();
                q.extend(events.drain(..));
                Ok(n)
            }
            Self::Spool(s) => {
                let n = s.append(events)?;
                events.drain(..n);
                Ok(n)
            }
        }
    }

    /// Takes up to `max` events from the front for delivery, with the mark to
    /// acknowledge them by and the number of damaged records skipped on the
    /// way (lost, but resolved with the batch so `flush()` accounting holds).
    pub fn take(&mut self, max: usize) -> io::Result<(Vec<AuditEvent>, Option<Position>, u64)> {
        match self {
            Self::Memory(q) => {
                let n = q.len().min(max);
                Ok((q.drain(..n).collect(), None, 0))
            }
            Self::Spool(s) => {
                let batch = s.read_batch(max)?;
                Ok((batch, Some(s.read_position()), s.take_skipped()))
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
