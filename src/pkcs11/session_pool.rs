//! A bounded pool of PKCS#11 sessions for one token.
//!
//! `cryptoki::Session` is `Send` but not `Sync`, so each signature takes a session out, uses it
//! alone and puts it back. The pool opens sessions on demand up to `max` (the token's
//! `ulMaxSessionCount`, capped); beyond that, callers wait for a session to come back. After a
//! session loss, [`SessionPool::invalidate`] bumps the generation: sessions from before it are
//! dropped instead of returned, now if idle or later when their user is done. Whether dropping
//! one closes it depends on the loss (see [`SessionLoss`]).

use std::sync::{Condvar, Mutex, MutexGuard};

use cryptoki::session::Session;

use super::error::SessionLoss;

/// Sessions of one token.
pub(crate) struct SessionPool {
    // A std Mutex: only push/pop/counters run under it, never a PKCS#11 call.
    state: Mutex<State>,
    returned: Condvar,
    max: usize,
}

struct State {
    idle: Vec<Session>,
    open: usize,
    generation: u64,
    /// Sessions of a generation below this one were lost with their handles
    /// ([`SessionLoss::Gone`]).
    gone_below: u64,
}

/// A session taken from the pool; it goes back on drop unless discarded or outdated.
pub(crate) struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
    generation: u64,
    broken: Option<SessionLoss>,
}

impl SessionPool {
    /// A pool that holds at most `max` (at least 1) open sessions.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                generation: 0,
                gone_below: 0,
            }),
            returned: Condvar::new(),
            max: max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only plain counters behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current generation; it changes at every [`invalidate`](Self::invalidate).
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Takes an idle session, opens a new one with `open` while below the limit, or waits.
    pub(crate) fn acquire<E>(
        &self,
        open: impl FnOnce() -> Result<Session, E>,
    ) -> Result<PooledSession<'_>, E> {
        let mut state = self.lock();
        loop {
            let generation = state.generation;
            if let Some(session) = state.idle.pop() {
                return Ok(self.wrap(session, generation));
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match open() {
                    Ok(session) => Ok(self.wrap(session, generation)),
                    Err(error) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(error)
                    }
                };
            }
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn wrap(&self, session: Session, generation: u64) -> PooledSession<'_> {
        PooledSession {
            pool: self,
            session: Some(session),
            generation,
            broken: None,
        }
    }

    /// Retires every session open now: idle ones at once, those in use when returned.
    pub(crate) fn invalidate(&self, loss: SessionLoss) {
        let stale = {
            let mut state = self.lock();
            state.generation += 1;
            if loss == SessionLoss::Gone {
                state.gone_below = state.generation;
            }
            let stale = std::mem::take(&mut state.idle);
            state.open -= stale.len();
            stale
        };
        self.returned.notify_all();
        for session in stale {
            retire(session, loss);
        }
    }

    /// How many sessions are open (idle or in use).
    pub(crate) fn open_sessions(&self) -> usize {
        self.lock().open
    }
}

impl PooledSession<'_> {
    /// Marks the session lost: it is retired instead of returned.
    pub(crate) fn discard(&mut self, loss: SessionLoss) {
        self.broken = Some(loss);
    }
}

impl std::ops::Deref for PooledSession<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        self.session
            .as_ref()
            .expect("BUG: a pooled session is present until drop")
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let mut state = self.pool.lock();
        let loss = if self.generation < state.gone_below {
            Some(SessionLoss::Gone)
        } else if state.generation != self.generation {
            Some(self.broken.unwrap_or(SessionLoss::Unusable))
        } else {
            self.broken
        };
        match loss {
            Some(loss) => {
                state.open -= 1;
                drop(state);
                retire(session, loss);
            }
            None => {
                state.idle.push(session);
                drop(state);
            }
        }
        self.pool.returned.notify_one();
    }
}

/// Closes a session that still exists; forgets one whose handle is gone, since the token may
/// already have given that number to a new session. Forgetting keeps a few bytes and a reference
/// to the module for the rest of the process.
fn retire(session: Session, loss: SessionLoss) {
    match loss {
        SessionLoss::Unusable => drop(session),
        SessionLoss::Gone => std::mem::forget(session),
    }
}
