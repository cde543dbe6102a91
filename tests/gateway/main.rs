//! Integration tests of the gateway against real MCP software, in one test binary.

mod cli;
mod conformance;
mod eras;
mod everything;
mod inspector;
mod pki;
mod protocol;
mod reload;
mod resilience;
mod stateless;
mod support;
mod tls;
