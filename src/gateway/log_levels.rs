//! `logging/setLevel` is per client, but a handshake-era downstream has one session for every
//! client. So each client's level filters the log messages relayed to it, and a downstream is
//! told the most verbose level any client asked for: no client gets less than it asked for
//! because of another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::mcp::era;

/// The level each client (session) set.
#[derive(Default)]
pub struct LogLevels {
    // A std Mutex: map operations only, never held across `.await`.
    levels: Mutex<HashMap<Arc<str>, usize>>,
}

impl LogLevels {
    /// Records `client`'s level; returns the level downstreams should log at now (`None`:
    /// not a level).
    pub fn set(&self, client: &Arc<str>, level: &str) -> Option<&'static str> {
        let index = era::level_index(level)?;
        let mut levels = self.lock();
        levels.insert(client.clone(), index);
        levels.values().min().map(|most| era::LEVELS[*most])
    }

    /// Forgets a client that is gone.
    pub fn forget(&self, client: &str) {
        self.lock().remove(client);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
        // Each operation leaves the map consistent, so a poisoned lock is still usable.
        self.levels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downstreams_log_at_the_most_verbose_level_asked() {
        let levels = LogLevels::default();
        let (quiet, chatty): (Arc<str>, Arc<str>) = ("quiet".into(), "chatty".into());
        assert_eq!(levels.set(&quiet, "error"), Some("error"));
        assert_eq!(levels.set(&chatty, "info"), Some("info"));
        assert_eq!(levels.set(&quiet, "warning"), Some("info"));
        levels.forget("chatty");
        assert_eq!(levels.set(&quiet, "critical"), Some("critical"));
        assert_eq!(levels.set(&quiet, "loud"), None);
    }
}
