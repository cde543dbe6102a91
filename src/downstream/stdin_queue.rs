//! The messages waiting to be written to a stdio child, bounded in bytes.
//!
//! A child that stops reading its stdin would otherwise make the gateway hold every message sent
//! to it for as long as it lives. Here a message waits only while fewer than `max_stdin_queue`
//! bytes do (an empty queue admits any one message), and a call that ends unanswered (timeout,
//! cancellation) takes its message back out, so nothing is written for a call nobody awaits.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `queued` bytes are waiting already, at least the limit.
    Full {
        /// Bytes waiting.
        queued: usize,
    },
    /// The writer is gone (the child exited or is being stopped).
    Closed,
}

#[derive(Default)]
struct State {
    // (the call the message starts, if any; the encoded line)
    waiting: VecDeque<(Option<u64>, Bytes)>,
    bytes: usize,
    closed: bool,
}

/// A bounded queue of encoded lines with one reader, the child's writer task.
pub struct StdinQueue {
    // A std Mutex: push/pop/scan only, never held across an `.await`.
    state: Mutex<State>,
    wake: Notify,
    max_bytes: usize,
}

impl StdinQueue {
    /// A queue that holds up to `max_bytes` (plus one message when empty).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::default(),
            wake: Notify::new(),
            max_bytes,
        }
    }

    /// The limit, for messages.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Queues `line`, which starts call `call` when given.
    pub fn push(&self, call: Option<u64>, line: Bytes) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.bytes > 0 && state.bytes + line.len() > self.max_bytes {
            return Err(Refused::Full {
                queued: state.bytes,
            });
        }
        state.bytes += line.len();
        state.waiting.push_back((call, line));
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Takes back the message of `call` if it is still waiting; returns whether it was.
    pub fn withdraw(&self, call: u64) -> bool {
        let mut state = self.lock();
        let Some(index) = state.waiting.iter().position(|(id, _)| *id == Some(call)) else {
            return false;
        };
        let (_, line) = state
            .waiting
            .remove(index)
            .expect("BUG: index from position");
        state.bytes -= line.len();
        true
    }

    /// The next line to write, waiting for one; `None` once closed.
    pub async fn pop(&self) -> Option<Bytes> {
        loop {
            {
                let mut state = self.lock();
                if let Some((_, line)) = state.waiting.pop_front() {
                    state.bytes -= line.len();
                    return Some(line);
                }
                if state.closed {
                    return None;
                }
            }
            // A push between the unlock and here leaves a permit, so this cannot miss it.
            self.wake.notified().await;
        }
    }

    /// Whether nothing waits (the writer flushes then).
    pub fn is_empty(&self) -> bool {
        self.lock().waiting.is_empty()
    }

    /// Refuses further messages and frees the waiting ones.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.waiting.clear();
        state.bytes = 0;
        drop(state);
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Each operation leaves the state consistent before anything can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_bytes_and_withdrawn_calls_are_not_written() {
        let queue = StdinQueue::new(100);
        let line = |n: usize| Bytes::from(vec![b'x'; n]);
        queue
            .push(Some(1), line(150))
            .expect("an empty queue admits any message");
        assert_eq!(
            queue.push(Some(2), line(1)),
            Err(Refused::Full { queued: 150 })
        );
        assert!(queue.withdraw(1));
        assert!(!queue.withdraw(1));
        queue.push(Some(3), line(60)).unwrap();
        queue.push(None, line(40)).unwrap();
        assert_eq!(
            queue.push(Some(4), line(1)),
            Err(Refused::Full { queued: 100 })
        );
        assert_eq!(queue.pop().await.unwrap().len(), 60);
        assert_eq!(queue.pop().await.unwrap().len(), 40);
        assert!(queue.is_empty());
        queue.close();
        assert_eq!(queue.pop().await, None);
        assert_eq!(queue.push(None, line(1)), Err(Refused::Closed));
    }
}
