//! A durable acknowledgement means durable under every fsync policy: with
//! `spool_fsync: never` appends are not fsynced, but `sync()` (what
//! `record_durable`, `sync_within` and the Gateway's `durable_ack` wait for)
//! must make a new segment's directory entry durable too, or a power loss
//! could take the whole segment, acknowledged events and all.

#[allow(dead_code)] // this test uses the aimed faults only
mod faulty_io;

use std::sync::Arc;
use std::time::Duration;

use audit_sdk::spool::{Spool, SpoolOptions};
use audit_sdk::{AuditEvent, FsyncPolicy};
use faulty_io::{Aimed, FaultyIo};

fn event() -> AuditEvent {
    AuditEvent::builder("gateway.signal.received", "rr-1")
        .category("gateway")
        .action("received")
        .actor("service", "gateway")
        .resource("Deployment", "payments/api")
        .build()
}

#[test]
fn sync_under_fsync_never_makes_a_new_segment_durable_too() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::default();
    let opts = SpoolOptions {
        dir: dir.path().to_owned(),
        max_bytes: 1 << 20,
        segment_bytes: 64 << 10,
        fsync: FsyncPolicy::Never,
        fsync_interval: Duration::from_secs(1),
    };
    let (mut spool, _) = Spool::open_with(opts, Arc::new(io.clone())).unwrap();
    // The first directory sync fails: `never` must not have skipped it.
    io.aim("sync_dir", 1, Aimed::Fail);
    assert_eq!(
        spool.append(&[event()]).unwrap(),
        1,
        "never: no sync on append"
    );
    let err = spool
        .sync()
        .expect_err("the new segment's entry is synced by sync()");
    println!("sync under never with the directory sync failing: {err}");
    assert!(io.fired().contains(&("fail", "sync_dir")));
    // Still owed after the failure: the next sync does it.
    spool.sync().expect("the disk answers again");
}
