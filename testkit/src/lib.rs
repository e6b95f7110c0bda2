//! What the tests and the benchmark start and talk to, in one crate: real servers they own
//! (PostgreSQL, nats-server), a fake card API, free loopback ports and a plain HTTP client.
//!
//! Everything here is synchronous (or owns its own runtime), so that it can be called from a
//! plain `#[test]` and from inside `#[tokio::test]` alike: `block_on` panics inside a runtime.
//!
//! * [`pg`]: throwaway PostgreSQL clusters and fresh databases ([`pg::fresh_db`]), with TLS.
//! * [`nats`]: `nats-server` processes and clusters with JetStream, and their monitoring view.
//! * [`fake_api`]: the card API the `http` source pulls from, with faults a test programs.
//! * [`ports`]: the one way to get a free loopback port.
//! * [`http`]: the one HTTP client of the tests.
//! * [`process`]: the watchdog that cleans up after a test process that died.

pub mod fake_api;
pub mod http;
pub mod nats;
pub mod pg;
pub mod ports;
pub mod process;
