//! Integration tests of the gateway against real MCP software, in one test binary.

mod bearer;
mod browser;
mod chromium;
mod cli;
mod conformance;
mod dual_era;
mod eras;
mod everything;
mod front_door;
mod hostile;
mod hostile_client;
mod hsm;
mod inspector;
mod oauth_flow;
mod oidc;
#[path = "../pkcs11_support/mod.rs"]
mod pkcs11_support;
mod pki;
mod policy;
mod protocol;
mod reload;
mod resilience;
mod server_requests;
mod stateless;
mod subscriptions;
mod support;
mod tls;
