//! Group commit, counted: 64 concurrent `record_durable()` callers share
//! fdatasyncs instead of paying one each. The spool's file I/O goes through a
//! `SpoolIo` that counts segment fdatasyncs (the real ones, on a temp dir)
//! and makes each take 2 ms more, as a slow disk would, so the callers that
//! arrive during one fsync are visibly covered by the next.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use audit_sdk::spool::file_io::{AppendFile, ReadFile, RealIo, SpoolIo};
use audit_sdk::{AuditConfig, AuditEvent, AuditStore, FsyncPolicy};
use datastorage::testing::ports::free_port;

const CALLERS: usize = 64;
const EACH: usize = 10;

#[derive(Debug, Default)]
struct CountingIo {
    syncs: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountingFile {
    file: Box<dyn AppendFile>,
    syncs: Arc<AtomicU64>,
}

impl std::io::Write for CountingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl AppendFile for CountingFile {
    fn sync_data(&self) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        self.file.sync_data()
    }
}

impl SpoolIo for CountingIo {
    fn create_append(&self, path: &std::path::Path) -> std::io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(CountingFile {
            file: RealIo.create_append(path)?,
            syncs: self.syncs.clone(),
        }))
    }
    fn open_read(&self, path: &std::path::Path) -> std::io::Result<Box<dyn ReadFile>> {
        RealIo.open_read(path)
    }
    fn write_file(&self, path: &std::path::Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
        RealIo.write_file(path, bytes, sync)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        RealIo.rename(from, to)
    }
    fn set_len(&self, path: &std::path::Path, len: u64) -> std::io::Result<()> {
        RealIo.set_len(path, len)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        RealIo.remove_file(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        RealIo.sync_dir(dir)
    }
}

fn event(caller: usize, n: usize) -> AuditEvent {
    AuditEvent::builder("gateway.signal.received", format!("rr-{caller:04}-{n:04}"))
        .category("gateway")
        .action("received")
        .actor("service", "gateway")
        .resource("Deployment", "payments/api")
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_records_share_fdatasyncs() {
    let dir = tempfile::tempdir().unwrap();
    // DataStorage down: only the spool can make an event durable.
    let mut config = AuditConfig::new(format!("http://127.0.0.1:{}", free_port()));
    config.spool_dir = Some(dir.path().to_owned());
    // Only the durable acknowledgements ask for fsyncs.
    config.spool_fsync = FsyncPolicy::Never;
    config.shutdown_timeout = Duration::from_millis(200);
    let io = CountingIo::default();
    let syncs = io.syncs.clone();
    let transport = audit_sdk::transport::build(&config).unwrap();
    let store = AuditStore::with_transport_and_io(config, transport, Arc::new(io)).unwrap();
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    store.record_durable(event(caller, n)).await.unwrap();
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let events = (CALLERS * EACH) as u64;
    let fsyncs = syncs.load(Ordering::Relaxed);
    println!(
        "{events} durable records from {CALLERS} callers: {fsyncs} fdatasyncs ({:.1} events each)",
        events as f64 / fsyncs.max(1) as f64
    );
    assert!(fsyncs > 0, "durable acknowledgements fsync");
    // One fsync per caller's event would be `events`; with every caller
    // waiting on the same fsync, about `EACH` (one per round of callers).
    assert!(
        fsyncs * 8 <= events,
        "{fsyncs} fdatasyncs for {events} events: group commit does not group"
    );
    store.close().await;
}
