//! A fault-injecting [`SpoolIo`] for the spool's model test.
//!
//! It passes every operation to the real files and counts the ones that
//! change them ("writes": every `write` call of a segment, `sync_data`,
//! `sync_dir`, the cursor's `write_file`, `rename`, `set_len`,
//! `remove_file`, segment creation). An armed [`Plan`] then fails the N-th
//! write from arming:
//! - `Enospc`: that write fails with ENOSPC and changes nothing; the disk
//!   has room again afterwards.
//! - `Torn`: a segment write puts only its first `keep` bytes on disk, then
//!   the process dies; any other operation dies before it happens.
//! - `CrashAfter`: that write happens, then the process dies.
//!
//! After a death every call fails (the test then reopens the directory with
//! a fresh spool, as a restarted process would).
//!
//! [`FaultyIo::aim`] aims a fault at the N-th call of one operation by name,
//! reads included (`open_read`, `read`, `seek`), whatever the write count:
//! - `Aimed::Fail`: that call fails with EIO and changes nothing; the disk
//!   stays alive (a recovery read or a cut failing at open);
//! - `Aimed::Stall`: that call blocks until [`FaultyIo::release`], then
//!   happens (an fsync or a write hanging on a dying disk or a full NFS
//!   server); [`FaultyIo::wait_stalled`] is the readiness signal.
//!
//! What it does not model: a
//! power loss (`sync_data` and `sync_dir` are counted but not performed, as
//! a dead process leaves the page cache to the kernel); the bit flips and
//! zero-filled tails the model applies between crashes stand for that.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use audit_sdk::spool::file_io::{AppendFile, ReadFile, RealIo, SpoolIo};
use audit_sdk::spool::SpoolOptions;
use audit_sdk::{AuditEvent, FsyncPolicy};

/// Spool options of the fault tests: `max_bytes` of room in segments of
/// `segment_bytes`, every append fsynced.
pub fn spool_options(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_owned(),
        max_bytes,
        segment_bytes,
        fsync: FsyncPolicy::Always,
        fsync_interval: Duration::from_secs(1),
    }
}

/// `n` Gateway-shaped events, each of its own correlation (`rr-<i>`).
pub fn gateway_events(n: usize) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            AuditEvent::builder("gateway.signal.received", format!("rr-{i}"))
                .category("gateway")
                .action("received")
                .actor("service", "gateway")
                .resource("Deployment", format!("payments/api-{i}"))
                .build()
        })
        .collect()
}

/// What to do at the armed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Plan {
    Enospc { at: u64 },
    Torn { at: u64, keep: usize },
    CrashAfter { at: u64 },
}

/// A fault aimed at one operation by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aimed {
    /// The call fails with EIO and changes nothing.
    Fail,
    /// The call blocks until released, then happens.
    Stall,
}

#[derive(Debug, Default)]
struct State {
    writes: u64,
    /// The plan and the write count it fires at.
    armed: Option<(Plan, u64)>,
    /// The aimed fault: operation, calls of it left before it fires, what.
    aimed: Option<(&'static str, u64, Aimed)>,
    crashed: bool,
    /// (plan kind, operation) pairs that fired.
    fired: BTreeSet<(&'static str, &'static str)>,
}

/// What an operation may do after [`State::enter`].
enum Go {
    Normal,
    Enospc,
    /// Write this many bytes, then die.
    Tear(usize),
    /// Do it, then die.
    ThenDie,
    /// Wait for the release, then do it.
    Stall,
}

impl State {
    fn enter(&mut self, op: &'static str, write: bool) -> io::Result<Go> {
        if self.crashed {
            return Err(io::Error::other("process crashed (fault injection)"));
        }
        if let Some((target, left, what)) = self.aimed.as_mut() {
            if *target == op {
                *left -= 1;
                if *left == 0 {
                    let what = *what;
                    self.aimed = None;
                    match what {
                        Aimed::Fail => {
                            self.fired.insert(("fail", op));
                            return Err(io::Error::from_raw_os_error(5));
                        }
                        Aimed::Stall => {
                            self.fired.insert(("stall", op));
                            if write {
                                self.writes += 1;
                            }
                            return Ok(Go::Stall);
                        }
                    }
                }
            }
        }
        if !write {
            return Ok(Go::Normal);
        }
        self.writes += 1;
        let Some((plan, at)) = self.armed else {
            return Ok(Go::Normal);
        };
        if self.writes != at {
            return Ok(Go::Normal);
        }
        self.armed = None;
        Ok(match plan {
            Plan::Enospc { .. } => {
                self.fired.insert(("enospc", op));
                Go::Enospc
            }
            Plan::Torn { keep, .. } => {
                self.fired.insert(("torn", op));
                self.crashed = true;
                Go::Tear(keep)
            }
            Plan::CrashAfter { .. } => {
                self.fired.insert(("crash_after", op));
                Go::ThenDie
            }
        })
    }
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

fn died() -> io::Error {
    io::Error::other("process crashed (fault injection)")
}

/// Whether stalled calls are held, and how many are.
#[derive(Debug, Default)]
struct Gate {
    stalled: usize,
    released: bool,
}

/// The fault-injecting I/O; clones share one state.
#[derive(Debug, Clone, Default)]
pub struct FaultyIo {
    state: Arc<Mutex<State>>,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

impl FaultyIo {
    /// Arms `plan`: it fires at the `at`-th write from now (1 = the next).
    pub fn arm(&self, plan: Plan) {
        let mut s = self.state.lock().unwrap();
        let at = match plan {
            Plan::Enospc { at } | Plan::Torn { at, .. } | Plan::CrashAfter { at } => at,
        };
        s.armed = Some((plan, s.writes + at.max(1)));
    }

    /// Aims `what` at the `nth` call (1 = the next) of operation `op`
    /// (`sync_data`, `segment_write`, `write_cursor`, `rename_cursor`,
    /// `set_len`, `remove_segment`, `create_segment`, `sync_dir`,
    /// `open_read`, `read`, `seek`, `flush`).
    pub fn aim(&self, op: &'static str, nth: u64, what: Aimed) {
        self.state.lock().unwrap().aimed = Some((op, nth.max(1), what));
        self.gate.0.lock().unwrap().released = false;
    }

    /// Lets every stalled call (and every later one) go on.
    pub fn release(&self) {
        let (gate, cv) = &*self.gate;
        gate.lock().unwrap().released = true;
        cv.notify_all();
    }

    /// Blocks until a call is stalled (true) or `timeout` passes (false).
    pub fn wait_stalled(&self, timeout: Duration) -> bool {
        let (gate, cv) = &*self.gate;
        let guard = gate.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |g| g.stalled == 0)
            .unwrap();
        guard.stalled > 0
    }

    /// Runs `op` through the state; a stalled call waits here, outside the
    /// state's lock, so other operations go on meanwhile.
    fn enter(&self, op: &'static str, write: bool) -> io::Result<Go> {
        let go = self.state.lock().unwrap().enter(op, write)?;
        if !matches!(go, Go::Stall) {
            return Ok(go);
        }
        let (gate, cv) = &*self.gate;
        let mut g = gate.lock().unwrap();
        g.stalled += 1;
        cv.notify_all();
        let mut g = cv.wait_while(g, |g| !g.released).unwrap();
        g.stalled -= 1;
        Ok(Go::Normal)
    }

    /// Whether the process "died".
    pub fn crashed(&self) -> bool {
        self.state.lock().unwrap().crashed
    }

    /// The (fault, operation) pairs that fired so far.
    pub fn fired(&self) -> BTreeSet<(&'static str, &'static str)> {
        self.state.lock().unwrap().fired.clone()
    }

    /// Runs a non-`write` operation through the plan.
    fn op<T>(&self, name: &'static str, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let go = self.enter(name, true)?;
        match go {
            Go::Normal | Go::Stall => f(),
            Go::Enospc => Err(enospc()),
            Go::Tear(_) => Err(died()),
            Go::ThenDie => {
                let out = f();
                self.state.lock().unwrap().crashed = true;
                out
            }
        }
    }
}

impl SpoolIo for FaultyIo {
    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = self.op("create_segment", || {
            std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(path)
        })?;
        Ok(Box::new(FaultyFile {
            file,
            io: self.clone(),
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        self.enter("open_read", false)?;
        Ok(Box::new(FaultyReader {
            file: File::open(path)?,
            io: self.clone(),
        }))
    }

    fn write_file(&self, path: &Path, bytes: &[u8], _sync: bool) -> io::Result<()> {
        let go = self.enter("write_cursor", true)?;
        match go {
            Go::Normal | Go::Stall => RealIo.write_file(path, bytes, false),
            Go::Enospc => {
                // Created, then nothing fits: an empty temporary file.
                File::create(path)?;
                Err(enospc())
            }
            Go::Tear(keep) => {
                RealIo.write_file(path, &bytes[..keep.min(bytes.len())], false)?;
                Err(died())
            }
            Go::ThenDie => {
                let out = RealIo.write_file(path, bytes, false);
                self.state.lock().unwrap().crashed = true;
                out
            }
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.op("rename_cursor", || RealIo.rename(from, to))
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.op("set_len", || RealIo.set_len(path, len))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.op("remove_segment", || RealIo.remove_file(path))
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.op("sync_dir", || Ok(()))
    }
}

#[derive(Debug)]
struct FaultyFile {
    file: File,
    io: FaultyIo,
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let go = self.io.enter("segment_write", true)?;
        match go {
            Go::Normal | Go::Stall => self.file.write(buf),
            Go::Enospc => Err(enospc()),
            Go::Tear(keep) => {
                self.file.write_all(&buf[..keep.min(buf.len())])?;
                Err(died())
            }
            Go::ThenDie => {
                let out = self.file.write(buf);
                self.io.state.lock().unwrap().crashed = true;
                out
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.enter("flush", false)?;
        Ok(())
    }
}

impl AppendFile for FaultyFile {
    fn sync_data(&self) -> io::Result<()> {
        self.io.op("sync_data", || Ok(()))
    }
}

#[derive(Debug)]
struct FaultyReader {
    file: File,
    io: FaultyIo,
}

impl Read for FaultyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.enter("read", false)?;
        self.file.read(buf)
    }
}

impl Seek for FaultyReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.io.enter("seek", false)?;
        self.file.seek(pos)
    }
}

impl ReadFile for FaultyReader {}
