//! Graceful shutdown on SIGINT/SIGTERM for the producer services.
//!
//! The first signal only raises a flag that the service loops check between writes, so a file is
//! never abandoned half-way (the in-place mode's partial files would otherwise linger). A second
//! signal exits at once with status 1, for when the loop is stuck.

use signal_hook::consts::TERM_SIGNALS;
use signal_hook::flag;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a sleeping service looks at the flag: short enough that stopping feels immediate,
/// long enough to cost nothing.
const POLL: Duration = Duration::from_millis(50);

/// Set once a termination signal arrived.
#[derive(Debug, Clone)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
}

impl Shutdown {
    /// Installs the handlers for SIGINT, SIGTERM and SIGQUIT.
    pub fn install() -> io::Result<Self> {
        let requested = Arc::new(AtomicBool::new(false));
        for &signal in TERM_SIGNALS {
            // Registered first so that it sees the flag as the *previous* signal left it: it exits
            // only on the second signal.
            flag::register_conditional_shutdown(signal, 1, Arc::clone(&requested))?;
            flag::register(signal, Arc::clone(&requested))?;
        }
        Ok(Self { requested })
    }

    /// A shutdown that only [`Shutdown::request`] triggers, for running a service in-process.
    pub fn manual() -> Self {
        Self {
            requested: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` unless shutdown is requested first; returns whether it was.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.is_requested() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(POLL));
        }
    }

    /// Blocks until shutdown is requested.
    pub fn wait(&self) {
        while !self.sleep(Duration::from_secs(3600)) {}
    }
}
