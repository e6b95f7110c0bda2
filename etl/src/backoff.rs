//! Capped exponential backoff that a stop interrupts: how every retry loop waits (batches the
//! database cannot take, start-up migrations, the broker connection, refused publishes).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The delay before the next attempt: doubled after each wait, up to a cap.
#[derive(Debug)]
pub struct Backoff {
    delay: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { delay: first, max }
    }

    /// What the next [`Backoff::wait`] sleeps (for the log line announcing it).
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Sleeps the current delay, then doubles it (up to the cap). False if `stop` fired first.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.delay;
        self.delay = (self.delay * 2).min(self.max);
        sleep(delay, stop).await
    }

    /// The current delay, for a caller that sleeps it itself (to cut it short at a deadline);
    /// the delay doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay;
        self.delay = (self.delay * 2).min(self.max);
        delay
    }

    /// The next delay, taken at random between half the current one and all of it so that
    /// clients retrying one server together spread out instead of returning in step; the
    /// current delay doubles (up to the cap). The caller sleeps it ([`sleep`]).
    pub fn next_jittered(&mut self) -> Duration {
        let full = self.delay.as_millis() as u64;
        self.delay = (self.delay * 2).min(self.max);
        Duration::from_millis(rand::random_range(full / 2..=full))
    }
}

/// Sleeps `delay`; false if `stop` fired first.
pub async fn sleep(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stop.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_delay_doubles_up_to_its_cap_and_a_stop_ends_the_wait() {
        let stop = CancellationToken::new();
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(3));
        let mut delays = Vec::new();
        for _ in 0..4 {
            delays.push(backoff.delay().as_millis());
            assert!(backoff.wait(&stop).await);
        }
        assert_eq!(delays, [1, 2, 3, 3]);
        stop.cancel();
        assert!(!backoff.wait(&stop).await);
    }
}
