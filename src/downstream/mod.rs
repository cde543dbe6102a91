//! Connections to downstream MCP servers.
//!
//! [`Downstream`] (in `supervisor`) owns one configured server: it connects over a [`link::Link`]
//! (stdio child, Streamable HTTP, or HTTP+SSE), runs `initialize`, fetches the lists, and
//! reconnects with backoff. Calls run on a [`connection::Connection`], many at once.

pub(crate) mod backoff;
pub mod changes;
pub mod connection;
pub mod dispatch;
mod excerpt;
pub mod http;
pub mod intake;
pub mod lines;
pub mod link;
mod oversized;
pub mod sse;
mod stdin_queue;
pub mod stdio;
pub mod supervisor;

pub use changes::{Change, ChangeSignal};
pub use connection::{Call, CallOptions, Watch};
pub use dispatch::{CallEvent, ServerRequest};
pub use supervisor::{Downstream, Events, Lists};
