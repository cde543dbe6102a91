//! Stateless clients' calls suspended while the client answers a downstream's request.
//!
//! A handshake-era downstream asks mid-call (sampling, elicitation, roots); a stateless client
//! can only be asked with an `input_required` result, answered by a new request that carries
//! `inputResponses` and the `requestState` the gateway chose. Meanwhile the downstream call
//! waits here under that state, for a limited time.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde_json::Value;

use crate::access::Principal;
use crate::gateway::Relay;

/// How long a suspended call waits for the client's retry before it is cancelled downstream
/// (a person may be answering an elicitation).
pub const HOLD_LIMIT: Duration = Duration::from_secs(300);

/// The suspended calls, by `requestState`.
#[derive(Default)]
pub struct HeldCalls {
    // Shared with the expiry tasks.
    calls: Arc<DashMap<String, (Principal, Relay)>>,
}

impl HeldCalls {
    /// Keeps a suspended relay of `owner`'s until its retry or [`HOLD_LIMIT`]; other relays
    /// are dropped (their call is over).
    pub fn hold(&self, relay: Relay, owner: Principal) {
        let Some(state) = relay.suspended_state().map(str::to_owned) else {
            return;
        };
        self.calls.insert(state.clone(), (owner, relay));
        let calls = self.calls.clone();
        tokio::spawn(async move {
            tokio::time::sleep(HOLD_LIMIT).await;
            // Dropping the relay cancels the downstream call and refuses its request.
            calls.remove(&state);
        });
    }

    /// The suspended call that `caller`'s retry of `method` with these `params` continues, if
    /// its `requestState` is one of the gateway's, held for the same principal and a call of
    /// the same method: a state carried into another request or by another caller does not
    /// hijack the call.
    pub fn take(&self, method: &str, params: Option<&Value>, caller: &Principal) -> Option<Relay> {
        let state = params?.get("requestState")?.as_str()?;
        let retried = |_: &String, (owner, relay): &(Principal, Relay)| {
            owner == caller && relay.method() == method
        };
        self.calls
            .remove_if(state, retried)
            .map(|(_, (_, relay))| relay)
    }
}
