//! "This list changed" as a set of flags, not a queue.
//!
//! A list change carries no content: ten in a row mean the same as one. So a change only sets a
//! flag and wakes the one task that acts on it; whatever arrives while that task works sets the
//! flag again and is handled once, next. At most one refresh runs and one is pending per list,
//! however fast a downstream announces changes, and the memory used is one byte.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

/// Which list of a downstream changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list` and `resources/templates/list`.
    Resources,
}

impl Change {
    /// Every list, in the order they are fetched.
    pub const ALL: [Change; 3] = [Change::Tools, Change::Prompts, Change::Resources];

    /// The list a `notifications/*/list_changed` method names.
    pub fn of_notification(method: &str) -> Option<Self> {
        match method {
            "notifications/tools/list_changed" => Some(Change::Tools),
            "notifications/prompts/list_changed" => Some(Change::Prompts),
            "notifications/resources/list_changed" => Some(Change::Resources),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Pending changes, raised by any task and taken by one.
#[derive(Debug, Default)]
pub struct ChangeSignal {
    pending: AtomicU8,
    wake: Notify,
}

impl ChangeSignal {
    /// Marks `change` pending and wakes the taker (once, however often it is raised).
    pub fn raise(&self, change: Change) {
        let before = self.pending.fetch_or(change.bit(), Ordering::AcqRel);
        if before & change.bit() == 0 {
            // A permit is stored when nobody waits yet, so no raise is ever missed.
            self.wake.notify_one();
        }
    }

    /// Waits until something is pending, then takes (and clears) all of it, in [`Change::ALL`]
    /// order.
    pub async fn take(&self) -> Vec<Change> {
        loop {
            let bits = self.pending.swap(0, Ordering::AcqRel);
            if bits != 0 {
                return Change::ALL
                    .into_iter()
                    .filter(|change| bits & change.bit() != 0)
                    .collect();
            }
            self.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_raises_is_taken_once() {
        let signal = ChangeSignal::default();
        for _ in 0..10_000 {
            signal.raise(Change::Tools);
        }
        signal.raise(Change::Resources);
        assert_eq!(signal.take().await, [Change::Tools, Change::Resources]);
        let again = tokio::time::timeout(std::time::Duration::from_millis(20), signal.take());
        assert!(again.await.is_err(), "nothing is left pending");
    }

    #[tokio::test]
    async fn a_raise_after_the_take_wakes_the_next_take() {
        let signal = std::sync::Arc::new(ChangeSignal::default());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.take().await }
        });
        tokio::task::yield_now().await;
        signal.raise(Change::Prompts);
        assert_eq!(waiter.await.unwrap(), [Change::Prompts]);
    }
}
