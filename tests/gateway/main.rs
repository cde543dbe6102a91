//! Integration tests of the gateway against real MCP software, in one test binary.

mod everything;
mod pki;
mod support;
mod tls;
