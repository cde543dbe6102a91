//! Exponential backoff with jitter, for reconnecting to downstreams and re-opening their streams.

use std::time::Duration;

/// Exponential backoff from 250 ms to 30 s, with jitter so restarts do not synchronise.
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// The pause before the next attempt; each call doubles the next one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        let jitter = rand::random_range(0..=delay.as_millis() as u64 / 4);
        delay + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..12).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(313));
        assert!(
            delays[11] >= Duration::from_secs(30) && delays[11] <= Duration::from_millis(37_500)
        );
    }
}
