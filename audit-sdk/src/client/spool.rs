//! The durable spool: append-only, checksummed segment files on local disk.
//!
//! With a `spool_dir`, every recorded event is written here before delivery
//! (a write-ahead log), so a crash, a `kill -9` or a DataStorage outage of any
//! length loses nothing that reached the disk. Delivery reads the oldest events
//! first and a small `cursor` file remembers what DataStorage acknowledged; a
//! restarted process resumes there, replaying older events before new ones.
//! Events acknowledged but not yet recorded in the cursor when a crash happens
//! are sent again; DataStorage is idempotent on `event_id`, so that costs a
//! duplicate answer, never a duplicate row.
//!
//! Layout: `<dir>/<20-digit id>.seg` segments of records (format v2, see
//! [`record`]: magic, length, event sequence number, CRC32C, event JSON),
//! `<dir>/cursor` (`<segment id> <offset> <next sequence>`),
//! `<dir>/rejected.jsonl`, `<dir>/lock`.
//! New writes always start a fresh segment, so segments of earlier processes are
//! never appended to.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::FsyncPolicy;
use crate::event::AuditEvent;

pub mod file_io;
pub mod record;

use file_io::{AppendFile, ReadFile, RealIo, SpoolIo};

pub use record::MAX_RECORD_BYTES;
use record::{Decoded, HEADER};

const CURSOR_FILE: &str = "cursor";
/// Held with an exclusive advisory lock (`flock`) by the one store using the
/// directory; the kernel releases it when the process dies, even by SIGKILL.
pub const LOCK_FILE: &str = "lock";
/// Name of the file poison events are set aside in.
pub const REJECTED_FILE: &str = "rejected.jsonl";

/// A position in the spool: where a read batch ends, for acknowledging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    segment: u64,
    offset: u64,
    /// Sequence number of the record at `offset`, when known.
    seq: Option<u64>,
}

/// Records read from the spool, not yet parsed (see [`Spool::read_records`]).
#[derive(Debug, Default)]
pub struct RawBatch {
    /// (sequence number, event JSON), oldest first.
    records: Vec<(u64, Vec<u8>)>,
}

impl RawBatch {
    /// The events, oldest first, and the records that passed their checksum
    /// but do not parse (sequence number, error).
    pub fn parse(self) -> (Vec<AuditEvent>, Vec<(u64, String)>) {
        let mut events = Vec::with_capacity(self.records.len());
        let mut unparseable = Vec::new();
        for (seq, payload) in self.records {
            match serde_json::from_slice::<AuditEvent>(&payload) {
                Ok(event) => events.push(event),
                Err(e) => unparseable.push((seq, e.to_string())),
            }
        }
        (events, unparseable)
    }
}

/// Settings of a spool.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Directory (created when missing).
    pub dir: PathBuf,
    /// Largest total size of segments.
    pub max_bytes: u64,
    /// Size at which a segment is closed.
    pub segment_bytes: u64,
    /// When writes are fsynced.
    pub fsync: FsyncPolicy,
    /// Period for [`FsyncPolicy::Interval`].
    pub fsync_interval: Duration,
}

/// What opening found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Undelivered events left by earlier processes.
    pub pending: u64,
    /// Damaged regions found (each logged): skipped records, torn tails.
    pub damaged_regions: u64,
    /// Events lost in them, counted from the sequence numbers around each
    /// gap, plus one per damaged tail of a segment (whose size nothing after
    /// it can tell: a lower bound), each sequence number counted once across
    /// opens.
    pub lost_events: u64,
}

/// An open spool. Not thread-safe by itself; the SDK keeps it behind a mutex.
#[derive(Debug)]
pub struct Spool {
    opts: SpoolOptions,
    /// Every file operation (the fault-injection seam of the tests).
    io: Arc<dyn SpoolIo>,
    /// The locked lock file; `None` once released by `close()`.
    lock: Option<File>,
    /// Every segment on disk with its valid length.
    segments: BTreeMap<u64, u64>,
    /// The segment being written, created on first append.
    writer: Option<(u64, BufWriter<Box<dyn AppendFile>>)>,
    /// The reader's open segment.
    reader: Option<(u64, BufReader<Box<dyn ReadFile>>)>,
    /// Next record to hand to delivery.
    read: Position,
    /// Everything before this is acknowledged (persisted in `cursor`).
    acked: Position,
    /// Events written and not acknowledged.
    pending: u64,
    /// Events written but not yet handed to delivery.
    unread: u64,
    /// Records found damaged while reading that were counted when written
    /// (each one event, counted lost); taken by delivery to resolve them.
    skipped: u64,
    /// Losses already counted, persisted in the cursor until acknowledged
    /// past so neither a read nor the next open counts them again.
    counted: Counted,
    /// Sequence number of the next record written.
    next_seq: u64,
    dirty: bool,
    /// A segment was created without syncing the directory (`never`): the
    /// next [`Spool::sync`] (a durable acknowledgement) must do it.
    dir_unsynced: bool,
    last_sync: Instant,
}

impl Spool {
    /// Opens (or creates) the spool in `opts.dir`, validating every record after
    /// the cursor and cutting off torn or corrupt tails.
    pub fn open(opts: SpoolOptions) -> io::Result<(Self, Recovery)> {
        Self::open_with(opts, Arc::new(RealIo))
    }

    /// [`Spool::open`] with every file operation going through `io`.
    pub fn open_with(opts: SpoolOptions, io: Arc<dyn SpoolIo>) -> io::Result<(Self, Recovery)> {
        if opts.segment_bytes.saturating_mul(2) > opts.max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "spool max_bytes must be at least 2 x segment_bytes",
            ));
        }
        fs::create_dir_all(&opts.dir)?;
        let lock = lock_dir(&opts.dir)?;
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(&opts.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            segments.insert(id, entry.metadata()?.len());
        }
        let (mut acked, mut counted) = read_cursor(&opts.dir)?;
        // Segments wholly before the cursor were delivered; remove leftovers.
        let stale: Vec<u64> = segments.range(..acked.segment).map(|(id, _)| *id).collect();
        for id in stale {
            segments.remove(&id);
            io.remove_file(&segment_path(&opts.dir, id))?;
        }
        let cursor_seq = acked.seq;
        if !segments.contains_key(&acked.segment) {
            acked = Position {
                segment: segments.keys().next().copied().unwrap_or(0),
                offset: 0,
                seq: None,
            };
        }
        let mut recovery = Recovery::default();
        let mut expected = acked.seq;
        // Tails to cut off, after the cursor has counted their loss: a crash
        // in between then counts a tail twice (a false alarm) instead of
        // losing it uncounted.
        let mut cuts = Vec::new();
        let ids: Vec<u64> = segments.keys().copied().collect();
        let newest = ids.last().copied();
        for id in ids {
            let start = if id == acked.segment { acked.offset } else { 0 };
            let path = segment_path(&opts.dir, id);
            let scanned = scan(io.as_ref(), &path, start, expected, &mut counted)?;
            expected = scanned.expected;
            recovery.pending += scanned.count;
            recovery.damaged_regions += scanned.regions;
            recovery.lost_events += scanned.lost;
            if scanned.lost > 0 {
                tracing::error!(
                    segment = %path.display(),
                    lost_events = scanned.lost,
                    regions = scanned.regions,
                    "audit spool records were damaged and skipped (loss counted in events from the sequence numbers); the records after them are kept"
                );
            }
            if scanned.end < fs::metadata(&path)?.len() {
                recovery.damaged_regions += 1;
                // A torn or damaged tail holds at least one record: the one
                // numbered `expected` (its size is unknown, so one event, a
                // lower bound). It is counted in any segment, not only the
                // newest: once cut off, no later record may be left to
                // measure the gap from. Recording it in `counted` keeps a
                // later gap from counting it again, and moving `expected`
                // past it keeps new appends from reusing its number. A
                // zero-filled tail (the file grew, its data never reached
                // the disk) shows no record at all.
                if scanned.tail_has_data {
                    match expected {
                        Some(seq) => {
                            // Records of the tail counted before (damaged in
                            // the middle of the segment on an earlier open,
                            // still on disk) are not the new loss: the first
                            // number not counted yet is.
                            let seq = counted.first_uncounted(seq);
                            recovery.lost_events += count_lost(&mut counted, seq, seq + 1);
                            expected = Some(seq + 1);
                        }
                        None if Some(id) == newest => recovery.lost_events += 1,
                        None => {}
                    }
                }
                tracing::error!(
                    segment = %path.display(),
                    offset = scanned.end,
                    "audit spool segment ends in a torn or unreadable tail; cut off there"
                );
                cuts.push((path, scanned.end));
            }
            segments.insert(id, scanned.end);
        }
        // Sequence numbers counted lost were written, and so was every
        // number below them: a counted range past the last valid record
        // means the records between were lost too (cut off with a tail, or
        // damaged since).
        if let (Some(seq), Some(high)) = (expected, counted.high()) {
            if high > seq {
                recovery.lost_events += count_lost(&mut counted, seq, high);
            }
        }
        let next_seq = expected.max(cursor_seq).max(counted.high()).unwrap_or(0);
        if recovery.lost_events > 0 {
            write_cursor(
                io.as_ref(),
                &opts.dir,
                acked,
                &counted,
                opts.fsync != FsyncPolicy::Never,
            )?;
        }
        for (path, end) in cuts {
            io.set_len(&path, end)?;
        }
        let spool = Self {
            opts,
            io,
            lock: Some(lock),
            segments,
            writer: None,
            reader: None,
            read: acked,
            acked,
            pending: recovery.pending,
            unread: recovery.pending,
            skipped: 0,
            counted,
            next_seq,
            dirty: false,
            dir_unsynced: false,
            last_sync: Instant::now(),
        };
        Ok((spool, recovery))
    }

    /// Releases the directory lock (at `close()`: another store may take the
    /// directory over while this handle still exists).
    pub fn release(&mut self) {
        self.writer = None;
        self.reader = None;
        self.lock = None;
    }

    /// Total bytes of segments on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.values().sum()
    }

    /// Bytes that count against `max_bytes`.
    /// Acknowledged bytes at the head of the oldest segment are not counted:
    /// they wait only for that segment to be deleted.
    pub fn used_bytes(&self) -> u64 {
        let acked = match self.segments.get(&self.acked.segment) {
            Some(len) => self.acked.offset.min(*len),
            None => 0,
        };
        self.bytes() - acked
    }

    /// Events written and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Events written and not yet handed to delivery.
    pub fn unread(&self) -> u64 {
        self.unread
    }

    /// Appends events in order until one does not fit in `max_bytes`; returns how
    /// many were written. Fsyncs according to the policy.
    ///
    /// All or nothing: on an error (ENOSPC, a failed fsync) the segments are
    /// cut back to where they were, so the caller may keep the events and
    /// append them again without a duplicate on disk. Only when the cut fails
    /// too (the disk is gone) may records of a failed append come back after
    /// a restart; DataStorage deduplicates those.
    pub fn append(&mut self, events: &[AuditEvent]) -> io::Result<usize> {
        let before = (self.segments.clone(), self.next_seq);
        self.append_all(events)
            .inspect_err(|_| self.roll_back(before))
    }

    fn append_all(&mut self, events: &[AuditEvent]) -> io::Result<usize> {
        let mut total = self.used_bytes();
        let mut written = 0;
        let mut buf = Vec::with_capacity(1024);
        for event in events {
            buf.clear();
            let payload = serde_json::to_vec(event).map_err(io::Error::other)?;
            let size = HEADER + payload.len() as u64;
            if total + size > self.opts.max_bytes {
                break;
            }
            let seq = self.next_seq;
            // Nothing unacknowledged before this record?
            let first = self.pending == 0 && written == 0;
            let (id, file) = self.writable(size, first)?;
            record::encode(seq, &payload, &mut buf);
            file.write_all(&buf)?;
            self.next_seq += 1;
            *self.segments.entry(id).or_insert(0) += size;
            total += size;
            written += 1;
        }
        if written > 0 {
            // Readers use their own file handle: the bytes must leave our buffer.
            if let Some((_, w)) = self.writer.as_mut() {
                w.flush()?;
            }
            self.dirty = true;
            match self.opts.fsync {
                FsyncPolicy::Always => self.sync()?,
                FsyncPolicy::Interval if self.last_sync.elapsed() >= self.opts.fsync_interval => {
                    self.sync()?
                }
                _ => {}
            }
            self.pending += written as u64;
            self.unread += written as u64;
        }
        Ok(written)
    }

    /// Undoes a failed append: drops what the writer still buffers (without
    /// writing it) and cuts every segment back to its length before.
    fn roll_back(&mut self, (before, next_seq): (BTreeMap<u64, u64>, u64)) {
        if let Some((_, w)) = self.writer.take() {
            // `into_parts` hands the buffer back instead of flushing it.
            drop(w.into_parts());
        }
        self.next_seq = next_seq;
        for (id, len) in self.segments.iter_mut() {
            let old = before.get(id).copied().unwrap_or(0);
            if *len != old {
                if let Err(e) = self.io.set_len(&segment_path(&self.opts.dir, *id), old) {
                    tracing::error!(
                        error = %e,
                        segment = id,
                        "audit spool cannot cut back a failed append; after a restart its records may be sent twice (DataStorage deduplicates)"
                    );
                }
                *len = old;
            }
        }
        // The next append starts a fresh segment after the cut one.
        self.reader = None;
    }

    /// Forces written events to disk, with the directory entries of the
    /// segments they are in (under every policy: a durable acknowledgement
    /// waits for this).
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some((_, w)) = self.writer.as_mut() {
            w.flush()?;
            if self.dirty {
                w.get_ref().sync_data()?;
            }
        }
        if self.dir_unsynced {
            self.io.sync_dir(&self.opts.dir)?;
            self.dir_unsynced = false;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs when the interval policy is due (called periodically).
    pub fn sync_if_due(&mut self) -> io::Result<()> {
        if self.dirty
            && self.opts.fsync != FsyncPolicy::Never
            && self.last_sync.elapsed() >= self.opts.fsync_interval
        {
            self.sync()?;
        }
        Ok(())
    }

    fn writable(
        &mut self,
        next_record: u64,
        nothing_before: bool,
    ) -> io::Result<(u64, &mut BufWriter<Box<dyn AppendFile>>)> {
        let full = match &self.writer {
            Some((id, _)) => {
                let len = self.segments.get(id).copied().unwrap_or(0);
                len > 0 && len + next_record > self.opts.segment_bytes
            }
            None => true,
        };
        if full {
            if self.writer.is_some() {
                self.sync()?;
            }
            let id = self.segments.keys().next_back().map_or(1, |last| last + 1);
            let file = self.io.create_append(&segment_path(&self.opts.dir, id))?;
            // Known before anything else can fail: a failed append cuts it
            // back, and the next one does not try to create it again.
            self.segments.insert(id, 0);
            // The new file's directory entry must be durable before any fsync
            // of its content can make a durable acknowledgement true.
            if self.opts.fsync != FsyncPolicy::Never {
                self.io.sync_dir(&self.opts.dir)?;
            } else {
                self.dir_unsynced = true;
            }
            // Nothing undelivered before it (a first segment, or a drained
            // spool, even one left with empty segments by a crash): start
            // the cursor here, naming the first sequence number, so losing
            // the first records is counted too.
            if nothing_before {
                self.read = Position {
                    segment: id,
                    offset: 0,
                    seq: Some(self.next_seq),
                };
                self.acked = self.read;
                write_cursor(
                    self.io.as_ref(),
                    &self.opts.dir,
                    self.acked,
                    &self.counted,
                    self.opts.fsync != FsyncPolicy::Never,
                )?;
            }
            self.writer = Some((id, BufWriter::with_capacity(256 * 1024, file)));
        }
        let (id, w) = self.writer.as_mut().expect("set above");
        Ok((*id, w))
    }

    /// Reads up to `max` events after the last read, oldest first, without
    /// acknowledging them. A record that fails its checksum ends its segment
    /// (logged as damage) and reading continues with the next segment.
    /// [`read_records`](Self::read_records), [`RawBatch::parse`] and
    /// [`count_parsed`](Self::count_parsed) in one call.
    pub fn read_batch(&mut self, max: usize) -> io::Result<Vec<AuditEvent>> {
        let raw = self.read_records(max)?;
        let (events, unparseable) = raw.parse();
        self.count_parsed(events.len(), &unparseable);
        Ok(events)
    }

    /// Reads up to `max` records after the last read, oldest first, without
    /// parsing them: the parse is most of a batch's read time, and the
    /// caller does it after releasing whatever guards the spool, so a
    /// concurrent append (and its durable waiters) does not wait for it.
    /// Hand the outcome to [`count_parsed`](Self::count_parsed).
    ///
    /// An I/O error after some records were read ends the batch there: those
    /// records are returned, and the next read starts at the failing one
    /// (an error that dropped them would skip their events silently).
    pub fn read_records(&mut self, max: usize) -> io::Result<RawBatch> {
        let mut out = RawBatch::default();
        while out.records.len() < max {
            match self.read_record() {
                Ok(Some(record)) => out.records.push(record),
                Ok(None) => break,
                Err(e) if out.records.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, read = out.records.len(), "audit spool read failed mid-batch; sending what was read");
                    // Reopened and positioned again on the next read.
                    self.reader = None;
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Takes into account a parsed batch of [`read_records`](Self::read_records):
    /// `parsed` events, and the records that passed their checksum but did
    /// not parse (sequence number, error), counted lost.
    pub fn count_parsed(&mut self, parsed: usize, unparseable: &[(u64, String)]) {
        self.unread = self.unread.saturating_sub(parsed as u64);
        for (seq, error) in unparseable {
            if count_lost(&mut self.counted, *seq, seq + 1) > 0 {
                self.lose_read(1, error);
            }
        }
    }

    /// The next valid record after the last read, damaged ones skipped
    /// (and counted); `None` at the end of what is written.
    fn read_record(&mut self) -> io::Result<Option<(u64, Vec<u8>)>> {
        loop {
            let Some(&end) = self.segments.get(&self.read.segment) else {
                return Ok(None);
            };
            if self.read.offset >= end {
                // Move on only from a segment nobody writes to any more.
                let writing = self.writer.as_ref().map(|(id, _)| *id);
                match self.segments.range(self.read.segment + 1..).next() {
                    Some((&next, _)) if writing != Some(self.read.segment) => {
                        self.read = Position {
                            segment: next,
                            offset: 0,
                            seq: self.read.seq,
                        };
                        self.reader = None;
                        continue;
                    }
                    _ => return Ok(None),
                }
            }
            let at = self.read;
            let reader = self.reader_at(at)?;
            let Some(Ok((seq, payload))) = record::read(reader)? else {
                // Damage written over since open (or a short read): find the
                // next valid record; the gap is counted from its sequence.
                let resume = self.resync(at, end)?;
                tracing::error!(
                    segment = at.segment,
                    offset = at.offset,
                    resume,
                    "audit spool record damaged since it was written; skipped to the next valid record"
                );
                self.read.offset = resume;
                continue;
            };
            self.read.offset += HEADER + payload.len() as u64;
            let gap = match self.read.seq {
                Some(expected) if seq > expected => seq - expected,
                _ => 0,
            };
            self.read.seq = Some(seq + 1);
            let new = count_lost(&mut self.counted, seq - gap, seq);
            if new > 0 {
                self.lose_read(new, "records missing before this one");
            }
            return Ok(Some((seq, payload)));
        }
    }

    /// Counts `events` lost while reading records this spool counted as
    /// unread; delivery resolves them as lost.
    fn lose_read(&mut self, events: u64, why: &str) {
        self.unread = self.unread.saturating_sub(events);
        self.skipped += events;
        metrics::counter!(crate::metrics::DROPPED, "reason" => "spool_damaged").increment(events);
        tracing::error!(
            lost_events = events,
            error = why,
            segment = self.read.segment,
            "audit spool events lost to damage since they were written; the next records are kept"
        );
    }

    /// Offset of the first valid record after damage at `at` (or `end`).
    fn resync(&mut self, at: Position, end: u64) -> io::Result<u64> {
        let mut file = self
            .io
            .open_read(&segment_path(&self.opts.dir, at.segment))?;
        file.seek(SeekFrom::Start(at.offset))?;
        let mut buf = Vec::new();
        file.take(end - at.offset).read_to_end(&mut buf)?;
        self.reader = None;
        Ok(record::resync(&buf).map_or(end, |k| at.offset + k as u64))
    }

    fn reader_at(&mut self, pos: Position) -> io::Result<&mut BufReader<Box<dyn ReadFile>>> {
        let reopen = !matches!(&self.reader, Some((id, _)) if *id == pos.segment);
        if reopen {
            let file = self
                .io
                .open_read(&segment_path(&self.opts.dir, pos.segment))?;
            self.reader = Some((pos.segment, BufReader::with_capacity(256 * 1024, file)));
        }
        let (_, reader) = self.reader.as_mut().expect("set above");
        if reader.stream_position()? != pos.offset {
            reader.seek(SeekFrom::Start(pos.offset))?;
        }
        Ok(reader)
    }

    /// Takes the count of records found damaged by reads since the last call
    /// (written by this process, so they are numbered in the FIFO and must be
    /// resolved as lost).
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// Where the last read ended.
    pub fn read_position(&self) -> Position {
        self.read
    }

    /// Acknowledges everything read so far (`count` events).
    pub fn ack(&mut self, count: u64) -> io::Result<()> {
        self.ack_to(self.read, count)
    }

    /// Acknowledges the `count` events that end at `to` (batches are
    /// acknowledged in the order they were read). Persists the cursor and
    /// deletes fully delivered segments.
    pub fn ack_to(&mut self, to: Position, count: u64) -> io::Result<()> {
        self.pending = self.pending.saturating_sub(count);
        self.acked = to;
        if let Some(seq) = self.acked.seq {
            self.counted.lost.retain(|_, end| *end > seq);
        }
        // The cursor first: a crash after it finds the delivered segments
        // stale and removes them at open. Deletion never waits on the
        // cursor: on a full disk the cursor write fails, and deleting the
        // delivered segments is what frees the space (a crash then replays
        // the acknowledged events of the kept segment; DataStorage
        // deduplicates).
        let cursor = write_cursor(
            self.io.as_ref(),
            &self.opts.dir,
            self.acked,
            &self.counted,
            self.opts.fsync == FsyncPolicy::Always,
        );
        let writing = self.writer.as_ref().map(|(id, _)| *id);
        let done: Vec<u64> = self
            .segments
            .range(..self.acked.segment)
            .map(|(id, _)| *id)
            .filter(|id| Some(*id) != writing)
            .collect();
        let mut removed = Ok(());
        for id in done {
            match self.io.remove_file(&segment_path(&self.opts.dir, id)) {
                Ok(()) => {
                    self.segments.remove(&id);
                }
                Err(e) => removed = Err(e),
            }
        }
        cursor.and(removed)
    }

    /// Appends a poison event to the rejected file.
    pub fn reject(&self, event: &AuditEvent, status: u16, reason: &str) -> io::Result<()> {
        append_rejected(&self.opts.dir, event, status, reason)
    }
}

/// Appends `{rejected_at, status, reason, event}` to `<dir>/rejected.jsonl`.
pub fn append_rejected(
    dir: &Path,
    event: &AuditEvent,
    status: u16,
    reason: &str,
) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let line = serde_json::json!({
        "rejected_at": crate::timestamp::format(&chrono::Utc::now()),
        "status": status,
        "reason": reason,
        "event": event,
    });
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(REJECTED_FILE))?;
    writeln!(file, "{line}")?;
    file.sync_data()
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Losses counted (logged, metered) and not yet acknowledged past.
#[derive(Debug, Default)]
struct Counted {
    /// Sequence numbers counted lost, as disjoint `start -> end` ranges (a
    /// gap that grows counts only its growth).
    lost: BTreeMap<u64, u64>,
}

impl Counted {
    /// One past the highest sequence number counted lost.
    fn high(&self) -> Option<u64> {
        self.lost.values().next_back().copied()
    }

    /// The first sequence number from `seq` on that is not counted lost.
    fn first_uncounted(&self, seq: u64) -> u64 {
        match self.lost.range(..=seq).next_back() {
            Some((_, end)) if *end > seq => *end,
            _ => seq,
        }
    }
}

/// Records sequence numbers `a..b` as lost; returns how many of them were
/// not counted before.
fn count_lost(counted: &mut Counted, a: u64, b: u64) -> u64 {
    if a >= b {
        return 0;
    }
    let (mut lo, mut hi, mut new) = (a, b, b - a);
    let touching: Vec<(u64, u64)> = counted
        .lost
        .range(..=b)
        .filter(|(_, end)| **end >= a)
        .map(|(s, e)| (*s, *e))
        .collect();
    for (s, e) in touching {
        new -= e.min(b).saturating_sub(s.max(a));
        lo = lo.min(s);
        hi = hi.max(e);
        counted.lost.remove(&s);
    }
    counted.lost.insert(lo, hi);
    new
}

/// The cursor: `<segment> <offset> <sequence or ->`, then a `lost <from>-<to>...`
/// line of sequence numbers whose loss was already counted.
fn read_cursor(dir: &Path) -> io::Result<(Position, Counted)> {
    let text = match fs::read_to_string(dir.join(CURSOR_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let mut lines = text.lines();
    let mut parts = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::parse::<u64>);
    let pos = match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Position {
            segment,
            offset,
            seq: parts.next().and_then(Result::ok),
        },
        _ => {
            tracing::error!(dir = %dir.display(), "audit spool cursor unreadable; replaying the whole spool (DataStorage deduplicates)");
            return Ok(Default::default());
        }
    };
    let mut counted = Counted::default();
    for line in lines {
        let mut words = line.split_whitespace();
        if words.next() != Some("lost") {
            continue;
        }
        for w in words {
            let range = w
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
            if let Some((a, b)) = range {
                count_lost(&mut counted, a, b);
            }
        }
    }
    Ok((pos, counted))
}

/// Replaces the cursor atomically (write a temporary file, then rename).
fn write_cursor(
    io: &dyn SpoolIo,
    dir: &Path,
    pos: Position,
    counted: &Counted,
    durable: bool,
) -> io::Result<()> {
    use std::fmt::Write as _;
    let mut text = match pos.seq {
        Some(seq) => format!("{} {} {seq}", pos.segment, pos.offset),
        None => format!("{} {} -", pos.segment, pos.offset),
    };
    if !counted.lost.is_empty() {
        text.push_str("\nlost");
        for (a, b) in &counted.lost {
            let _ = write!(text, " {a}-{b}");
        }
    }
    text.push('\n');
    let tmp = dir.join(format!("{CURSOR_FILE}.tmp"));
    io.write_file(&tmp, text.as_bytes(), durable)?;
    io.rename(&tmp, &dir.join(CURSOR_FILE))
}

/// What a segment holds after `start`.
struct Scanned {
    /// Records that pass their checksum and parse.
    count: u64,
    /// Damaged regions skipped inside the segment (the torn tail aside).
    regions: u64,
    /// Events lost in them: sequence gaps plus unparseable records.
    lost: u64,
    /// Sequence number expected next.
    expected: Option<u64>,
    /// End of the last valid record (a torn or unreadable tail after it).
    end: u64,
    /// Whether the tail after `end` holds anything but zeros.
    tail_has_data: bool,
}

/// Scans the records from `start`, expecting sequence `expected` first.
fn scan(
    io: &dyn SpoolIo,
    path: &Path,
    start: u64,
    expected: Option<u64>,
    counted: &mut Counted,
) -> io::Result<Scanned> {
    let mut file = io.open_read(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let mut scanned = Scanned {
        count: 0,
        regions: 0,
        lost: 0,
        expected,
        end: start,
        tail_has_data: false,
    };
    let mut i = 0;
    while i < buf.len() {
        match record::decode(&buf[i..]) {
            Decoded::Valid { seq, payload } => {
                if let Some(e) = scanned.expected.filter(|e| seq > *e) {
                    scanned.lost += count_lost(counted, e, seq);
                }
                scanned.expected = Some(seq + 1);
                if serde_json::from_slice::<AuditEvent>(payload).is_ok() {
                    scanned.count += 1;
                } else {
                    scanned.regions += 1;
                    scanned.lost += count_lost(counted, seq, seq + 1);
                }
                i += HEADER as usize + payload.len();
                scanned.end = start + i as u64;
            }
            Decoded::Damaged => match record::resync(&buf[i..]) {
                Some(k) => {
                    scanned.regions += 1;
                    i += k;
                }
                None => break,
            },
        }
    }
    scanned.tail_has_data = buf[(scanned.end - start) as usize..]
        .iter()
        .any(|b| *b != 0);
    Ok(scanned)
}

/// Takes the directory's lock file, or fails naming the conflict.
fn lock_dir(dir: &Path) -> io::Result<File> {
    use fs4::fs_std::FileExt;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    if !file.try_lock_exclusive()? {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "spool_dir {} is in use by another audit store (another process, or an overlapping restart); each store needs its own spool_dir",
                dir.display()
            ),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> SpoolOptions {
        SpoolOptions {
            dir: dir.to_owned(),
            max_bytes: 10 * 1024 * 1024,
            segment_bytes: 4096,
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
        }
    }

    fn events(n: usize) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| {
                AuditEvent::builder("t.e", "c")
                    .category("c")
                    .action("a")
                    .actor("s", "s")
                    .resource("r", format!("r{i}"))
                    .build()
            })
            .collect()
    }

    #[test]
    fn events_come_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let written = events(50);
        {
            let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
            assert_eq!(rec.pending, 0);
            assert_eq!(spool.append(&written).unwrap(), 50);
            assert!(spool.segments.len() > 1, "small segments roll over");
            let first = spool.read_batch(20).unwrap();
            assert_eq!(first, written[..20]);
            spool.ack(20).unwrap();
        }
        let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(rec.pending, 30);
        let rest = spool.read_batch(100).unwrap();
        assert_eq!(rest, written[20..]);
        spool.ack(30).unwrap();
        assert_eq!(spool.pending(), 0);
    }

    #[test]
    fn acknowledging_the_first_of_two_read_batches_keeps_the_second() {
        let dir = tempfile::tempdir().unwrap();
        let written = events(10);
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&written).unwrap();
            assert_eq!(spool.read_batch(4).unwrap(), written[..4]);
            let first = spool.read_position();
            assert_eq!(spool.read_batch(4).unwrap(), written[4..8]);
            // Two batches in flight; only the first is acknowledged before a crash.
            spool.ack_to(first, 4).unwrap();
            assert_eq!(spool.pending(), 6);
        }
        let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(rec.pending, 6);
        assert_eq!(spool.read_batch(10).unwrap(), written[4..]);
    }

    #[test]
    fn unacknowledged_reads_are_replayed_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let written = events(5);
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&written).unwrap();
            assert_eq!(spool.read_batch(5).unwrap().len(), 5);
            // No ack: the process dies mid-delivery.
        }
        let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(rec.pending, 5);
        assert_eq!(spool.read_batch(10).unwrap(), written);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&events(3)).unwrap();
        }
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(
            rec,
            Recovery {
                pending: 2,
                damaged_regions: 1,
                lost_events: 1,
            }
        );
        assert_eq!(spool.read_batch(10).unwrap().len(), 2);
    }

    #[test]
    fn a_flipped_byte_in_the_first_of_three_records_loses_that_event_only() {
        let dir = tempfile::tempdir().unwrap();
        let written = events(3);
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&written).unwrap();
        }
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        bytes[HEADER as usize + 5] ^= 0x01; // inside the first payload
        fs::write(&seg, bytes).unwrap();
        let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(
            rec,
            Recovery {
                pending: 2,
                damaged_regions: 1,
                lost_events: 1,
            },
            "one damaged record is one lost event"
        );
        let back = spool.read_batch(10).unwrap();
        assert_eq!(
            back,
            written[1..].to_vec(),
            "the records after it come back"
        );
        assert_eq!(spool.unread(), 0);
    }

    #[test]
    fn a_zero_filled_tail_is_not_read_as_empty_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&events(2)).unwrap();
        }
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        let valid = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 4096]); // a crash after the file grew
        fs::write(&seg, bytes).unwrap();
        let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(rec.pending, 2);
        assert_eq!(fs::metadata(&seg).unwrap().len(), valid, "tail cut off");
        assert_eq!(spool.read_batch(10).unwrap().len(), 2);
    }

    #[test]
    fn a_huge_length_prefix_is_damage_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&events(1)).unwrap();
        }
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 4]);
        fs::write(&seg, bytes).unwrap();
        let (_, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(rec.pending, 1);
    }

    #[test]
    fn a_second_spool_on_the_same_directory_is_refused_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let (mut first, _) = Spool::open(opts(dir.path())).unwrap();
        let err = Spool::open(opts(dir.path())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(
            err.to_string().contains("in use by another audit store"),
            "{err}"
        );
        first.release();
        Spool::open(opts(dir.path())).unwrap();
    }

    #[test]
    fn max_bytes_below_two_segments_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.max_bytes = o.segment_bytes;
        assert!(Spool::open(o).is_err());
    }

    #[test]
    fn a_failed_cursor_write_does_not_stop_segment_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
        spool.append(&events(60)).unwrap();
        let before = spool.segments.len();
        assert!(before > 2, "{before}");
        assert_eq!(spool.read_batch(60).unwrap().len(), 60);
        // A full disk: the cursor's temporary file cannot be created.
        fs::create_dir(dir.path().join("cursor.tmp")).unwrap();
        assert!(spool.ack(60).is_err(), "the cursor failure is reported");
        assert_eq!(
            spool.segments.len(),
            1,
            "only the segment being written is kept"
        );
        let on_disk = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert_eq!(on_disk, 1);
        // Acknowledged bytes of the kept segment no longer count against max_bytes.
        assert_eq!(spool.used_bytes(), 0);
        drop(spool);
        fs::remove_dir(dir.path().join("cursor.tmp")).unwrap();
        let (_, rec) = Spool::open(opts(dir.path())).unwrap();
        assert!(rec.pending <= 60, "at worst a replay of the kept segment");
    }

    /// Offsets of the records in a segment (from their lengths).
    fn record_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            out.push(at);
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
            at += HEADER as usize + len as usize;
        }
        out
    }

    #[test]
    fn a_damaged_length_in_the_middle_loses_that_event_only() {
        let dir = tempfile::tempdir().unwrap();
        let written = events(5);
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&written).unwrap();
        }
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        let at = record_offsets(&bytes);
        bytes[at[1] + 6] ^= 0x40; // the second record's length: nothing after it lines up
        fs::write(&seg, bytes).unwrap();
        let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(
            rec,
            Recovery {
                pending: 4,
                damaged_regions: 1,
                lost_events: 1
            }
        );
        let back = spool.read_batch(10).unwrap();
        assert_eq!(back, [&written[..1], &written[2..]].concat());
        assert_eq!(
            spool.unread(),
            0,
            "the gap is not counted again while reading"
        );
    }

    #[test]
    fn a_zeroed_run_of_records_is_counted_in_events_from_the_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let written = events(6);
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&written).unwrap();
        }
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        let at = record_offsets(&bytes);
        bytes[at[1]..at[4]].fill(0); // records 2, 3 and 4 zeroed
        fs::write(&seg, bytes).unwrap();
        let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(rec.pending, 3);
        assert_eq!(rec.lost_events, 3, "one region, three events");
        assert_eq!(rec.damaged_regions, 1);
        let back = spool.read_batch(10).unwrap();
        assert_eq!(back, [&written[..1], &written[4..]].concat());
    }

    #[test]
    fn damage_after_open_is_counted_in_events_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let written = events(5);
        let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
        spool.append(&written).unwrap();
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        let at = record_offsets(&bytes);
        bytes[at[1]..at[3]].fill(0xAA);
        fs::write(&seg, bytes).unwrap();
        let back = spool.read_batch(10).unwrap();
        assert_eq!(back, [&written[..1], &written[3..]].concat());
        assert_eq!(spool.take_skipped(), 2);
        assert_eq!(spool.unread(), 0);
    }

    #[test]
    fn the_sequence_continues_across_restarts_so_a_lost_first_record_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&events(3)).unwrap();
            spool.read_batch(3).unwrap();
            spool.ack(3).unwrap();
            spool.append(&events(3)).unwrap();
        }
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .max()
            .unwrap();
        let cursor = fs::read_to_string(dir.path().join("cursor")).unwrap();
        let offset: usize = cursor.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        bytes[offset + 30] ^= 1; // the first record after the cursor
        fs::write(&seg, bytes).unwrap();
        let (_, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!((rec.pending, rec.lost_events), (2, 1));
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut segs: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segs.sort();
        segs
    }

    /// Found by the model test (`tests/spool_model.rs`): the newest segment's
    /// only record is torn (counted, cut off to an empty file), then the last
    /// record of the sealed segment before it is damaged. Nothing follows it
    /// any more to measure the gap from, so it was counted as 0 events.
    #[test]
    fn a_damaged_last_record_of_a_sealed_segment_is_counted_when_nothing_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(opts(dir.path())).unwrap();
            spool.append(&events(40)).unwrap();
        }
        let segs = segment_files(dir.path());
        assert!(segs.len() >= 2, "{segs:?}");
        let (sealed, newest) = (&segs[segs.len() - 2], &segs[segs.len() - 1]);
        // A crash tore the newest segment's first record: every record of it is lost.
        OpenOptions::new()
            .write(true)
            .open(newest)
            .unwrap()
            .set_len(HEADER + 3)
            .unwrap();
        let (_, rec) = Spool::open(opts(dir.path())).unwrap();
        assert!(rec.lost_events >= 1, "{rec:?}");
        let pending = rec.pending;
        // Then the sealed segment's last record is damaged.
        let mut bytes = fs::read(sealed).unwrap();
        let last = *record_offsets(&bytes).last().unwrap();
        bytes[last] ^= 1;
        fs::write(sealed, bytes).unwrap();
        let (mut spool, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!(
            (rec.pending, rec.lost_events),
            (pending - 1, 1),
            "the damaged record is one lost event"
        );
        assert_eq!(spool.read_batch(100).unwrap().len() as u64, pending - 1);
        // And appends after it do not reuse a sequence number counted lost:
        // the gap before them is counted once, not again.
        spool.append(&events(2)).unwrap();
        drop(spool);
        let (_, rec) = Spool::open(opts(dir.path())).unwrap();
        assert_eq!((rec.pending, rec.lost_events), (pending + 1, 0));
    }

    fn only_segment(dir: &Path) -> PathBuf {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap()
    }

    #[test]
    fn appends_stop_at_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.max_bytes = 2000;
        o.segment_bytes = 1000;
        let (mut spool, _) = Spool::open(o).unwrap();
        let written = spool.append(&events(100)).unwrap();
        assert!(written > 0 && written < 100, "{written}");
        assert!(spool.bytes() <= 2000);
    }
}
