//! Free loopback ports for servers started by tests.
//!
//! Binding port 0 and releasing it hands out a port from the kernel's ephemeral
//! range, which is also where outgoing connections get their local ports: a
//! busy process (a connection pool opening sixteen connections) can take the
//! port before the server binds it. These ports come from below that range
//! instead, and never twice to the same test process.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports handed out by this process so far.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The window below Linux's default ephemeral range (32768–60999).
const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// A loopback port that was free a moment ago and that this process has not
/// handed out before.
pub fn free_port() -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    // Start where no other test process is likely to: spread by pid.
    let start = std::process::id().wrapping_mul(7_919) % COUNT;
    for i in 0..COUNT {
        let port = u16::try_from(FIRST + (start + i * 13) % COUNT).expect("below 32768");
        if handed.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.insert(port);
            return port;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        FIRST + COUNT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_below_the_ephemeral_range_and_never_repeat() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        for port in ports {
            assert!((20_000..32_000).contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
