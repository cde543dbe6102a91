//! MCP wire format: JSON-RPC 2.0 messages kept as [`serde_json::Value`], protocol revisions, SSE.
//!
//! The gateway is a transparent relay: it reads and rewrites only the fields it must (ids, names,
//! cursors, progress tokens) so fields from newer revisions or vendors pass through intact.

pub mod era;
pub mod jsonrpc;
pub mod param_headers;
pub mod sse;
pub mod version;
