//! Nexus: an MCP gateway on native OpenSSL.
//!
//! Layout (data flows one way, top to bottom):
//! - [`config`]: `nexus.toml` read, templated and resolved into types that cannot be half-set.
//! - [`downstream`]: connections to downstream MCP servers (stdio children, Streamable HTTP,
//!   legacy SSE), each supervised (timeouts, restart with backoff).
//! - [`gateway`]: the catalog built from every downstream (naming, routing, search/execute).
//! - [`server`]: the hyper listener: the MCP endpoint, `/health`, `/metrics`.
#![warn(missing_docs)]

pub mod config;
