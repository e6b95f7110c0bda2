//! Shutdown in two steps: stop intake (the signal), then, if finishing what is in flight takes
//! longer than the bound, a hard stop that abandons it (it stays with its source for the next
//! run, since nothing is acknowledged before its commit).

use tokio_util::sync::CancellationToken;

/// The two shutdown steps every stage listens to. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Sources stop taking new records; everything already taken is finished.
    intake: CancellationToken,
    /// The bound expired: workers stop retrying a dead database and drop their batches.
    hard: CancellationToken,
}

impl Shutdown {
    /// Intake stops when `signal` fires (SIGTERM, a test's handle) or on [`Shutdown::stop_intake`].
    pub fn new(signal: &CancellationToken) -> Shutdown {
        Shutdown {
            intake: signal.child_token(),
            hard: CancellationToken::new(),
        }
    }

    pub fn stop_intake(&self) {
        self.intake.cancel();
    }

    /// Fires when intake stops.
    pub fn intake(&self) -> &CancellationToken {
        &self.intake
    }

    pub fn hard_stop(&self) {
        self.hard.cancel();
    }

    /// Fires on a hard stop.
    pub fn hard(&self) -> &CancellationToken {
        &self.hard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signal_stops_intake_but_only_the_bound_makes_it_hard() {
        let signal = CancellationToken::new();
        let shutdown = Shutdown::new(&signal);
        signal.cancel();
        assert!(shutdown.intake().is_cancelled());
        assert!(!shutdown.hard().is_cancelled());
        shutdown.hard_stop();
        assert!(shutdown.hard().is_cancelled());
    }
}
