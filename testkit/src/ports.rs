//! Free loopback ports: the one helper every test, harness and benchmark takes them from.
//!
//! The OS picks a port (`bind` to port 0) and we release it, so whoever uses it must bind it
//! itself; someone else may take it in between, which the servers started here retry on. All
//! tests of a crate run in one process with parallel threads: a port handed out once is never
//! handed out again by this process, so two tests (or a stopped server waiting to start again
//! on its port) cannot be given the same one.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// Every port this process has handed out.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that was free a moment ago and that this process has not handed out before.
///
/// # Panics
///
/// If no port can be bound, or the OS keeps offering ports handed out already.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .unwrap_or_else(|e| panic!("testkit: finding a free port: {e}"));
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("testkit: finding a free port: the OS keeps offering ports handed out already")
}

/// `127.0.0.1:<port>` with a [`free_port`], for a server's listen address.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_hands_out_a_port_twice() {
        let ports: std::collections::BTreeSet<u16> = (0..50).map(|_| super::free_port()).collect();
        assert_eq!(ports.len(), 50);
    }
}
