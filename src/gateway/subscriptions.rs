//! Resource subscriptions: which clients watch which URI.
//!
//! A downstream connection is shared by every client, so the gateway subscribes downstream once
//! per URI (for its first subscriber) and unsubscribes after the last one left; the
//! `notifications/resources/updated` a downstream then sends reaches only the clients
//! subscribed to that URI. A subscriber is a handshake-era session or a stateless client's
//! `subscriptions/listen` stream, named by an id unique among them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::Gateway;
use crate::mcp::jsonrpc::{self, METHOD_NOT_FOUND, RESOURCE_NOT_FOUND, RpcError};

/// The notification that is delivered only to a URI's subscribers.
const UPDATED: &str = "notifications/resources/updated";

/// URI → the subscribers watching it.
#[derive(Default)]
pub struct Subscriptions {
    // A std Mutex: set operations only, never held across `.await`.
    watchers: Mutex<HashMap<String, HashSet<Arc<str>>>>,
}

impl Subscriptions {
    /// Adds a subscriber; returns whether the URI had none before (the downstream must be
    /// asked).
    pub fn add(&self, uri: &str, subscriber: &Arc<str>) -> bool {
        let mut watchers = self.lock();
        let set = watchers.entry(uri.to_owned()).or_default();
        set.insert(subscriber.clone()) && set.len() == 1
    }

    /// Removes a subscriber; returns whether it was the URI's last one (the downstream
    /// subscription must end).
    pub fn remove(&self, uri: &str, subscriber: &str) -> bool {
        let mut watchers = self.lock();
        let Some(set) = watchers.get_mut(uri) else {
            return false;
        };
        let last = set.remove(subscriber) && set.is_empty();
        if set.is_empty() {
            watchers.remove(uri);
        }
        last
    }

    /// Removes a subscriber from every URI; returns the URIs left without subscribers.
    pub fn remove_everywhere(&self, subscriber: &str) -> Vec<String> {
        let mut watchers = self.lock();
        let mut orphaned = Vec::new();
        watchers.retain(|uri, set| {
            if set.remove(subscriber) && set.is_empty() {
                orphaned.push(uri.clone());
            }
            !set.is_empty()
        });
        orphaned
    }

    /// Whether `subscriber` watches `uri`.
    pub fn contains(&self, uri: &str, subscriber: &str) -> bool {
        self.lock()
            .get(uri)
            .is_some_and(|set| set.contains(subscriber))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<Arc<str>>>> {
        lock(&self.watchers)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each operation leaves the maps consistent, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Gateway {
    /// Subscribes `subscriber` to `uri`, watching it downstream if it is the first.
    pub async fn subscribe_resource(
        &self,
        subscriber: &Arc<str>,
        uri: &str,
    ) -> Result<(), RpcError> {
        let server = self.subscription_server(uri)?;
        if self.subscriptions.add(uri, subscriber) {
            let downstream = &self.catalog().members[server].downstream;
            if let Err(error) = downstream.watch(uri).await {
                self.subscriptions.remove(uri, subscriber);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Unsubscribes `subscriber` from `uri`, ending the downstream watch after the last one.
    pub async fn unsubscribe_resource(&self, subscriber: &str, uri: &str) -> Result<(), RpcError> {
        let server = self.subscription_server(uri)?;
        if self.subscriptions.remove(uri, subscriber) {
            let downstream = &self.catalog().members[server].downstream;
            downstream.unwatch(uri).await?;
        }
        Ok(())
    }

    /// Drops every subscription of a subscriber that is gone (session ended, listen stream
    /// closed), and its log level; downstream watches nobody needs any more end in the
    /// background.
    pub fn forget_subscriber(&self, subscriber: &str) {
        self.log_levels.forget(subscriber);
        for uri in self.subscriptions.remove_everywhere(subscriber) {
            let Ok(server) = self.subscription_server(&uri) else {
                continue;
            };
            let downstream = self.catalog().members[server].downstream.clone();
            tokio::spawn(async move {
                let _ = downstream.unwatch(&uri).await;
            });
        }
    }

    /// Whether a server notification reaches `subscriber`: resource updates only for the
    /// URIs it subscribed to, everything else always.
    pub fn reaches(&self, subscriber: &str, notification: &Value) -> bool {
        if jsonrpc::method(notification) != Some(UPDATED) {
            return true;
        }
        notification
            .pointer("/params/uri")
            .and_then(Value::as_str)
            .is_some_and(|uri| self.subscriptions.contains(uri, subscriber))
    }

    /// Whether any downstream lets clients subscribe to its resources.
    pub fn offers_subscriptions(&self) -> bool {
        self.catalog()
            .members
            .iter()
            .any(|member| offers_subscriptions(&member.downstream.lists().capabilities))
    }

    /// The downstream that owns `uri` and offers subscriptions.
    fn subscription_server(&self, uri: &str) -> Result<usize, RpcError> {
        let catalog = self.catalog();
        let &(server, _) = catalog
            .resource(uri)
            .ok_or_else(|| resource_not_found(uri))?;
        let downstream = &catalog.members[server].downstream;
        if !offers_subscriptions(&downstream.lists().capabilities) {
            return Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!(
                    "server '{}' does not offer resource subscriptions",
                    downstream.name()
                ),
            ));
        }
        Ok(server)
    }
}

fn offers_subscriptions(capabilities: &Value) -> bool {
    capabilities.pointer("/resources/subscribe") == Some(&Value::Bool(true))
}

/// The error for a URI no downstream serves (with the URI as `data`, as MCP asks).
pub fn resource_not_found(uri: &str) -> RpcError {
    let mut error = RpcError::new(RESOURCE_NOT_FOUND, format!("Resource not found: {uri}"));
    error.data = Some(json!({"uri": uri}));
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_subscribers_are_reported() {
        let subscriptions = Subscriptions::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert!(subscriptions.add("test://x", &a));
        assert!(!subscriptions.add("test://x", &b));
        assert!(!subscriptions.add("test://x", &a), "already subscribed");
        assert!(subscriptions.contains("test://x", "b"));
        assert!(!subscriptions.remove("test://x", "a"));
        assert!(!subscriptions.contains("test://x", "a"));
        assert!(subscriptions.remove("test://x", "b"));
        assert!(!subscriptions.remove("test://x", "b"), "nothing left");
    }

    #[test]
    fn a_gone_subscriber_leaves_everywhere() {
        let subscriptions = Subscriptions::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        subscriptions.add("test://x", &a);
        subscriptions.add("test://y", &a);
        subscriptions.add("test://y", &b);
        assert_eq!(subscriptions.remove_everywhere("a"), ["test://x"]);
        assert!(subscriptions.contains("test://y", "b"));
    }
}
