//! TLS on the system's OpenSSL: the connector every HTTPS downstream goes through.

pub mod client;
pub mod connector;

pub use client::{ClientContext, TlsError};
pub use connector::{Connector, Stream};
