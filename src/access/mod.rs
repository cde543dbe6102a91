//! The front door: who is calling, whether they may, how often, and the record of what they did.
//!
//! The server layer establishes a [`Caller`] for every request before it reaches the MCP
//! endpoint; the gateway layer reads it (policy, per-caller limits, audit) through
//! [`RequestContext`](crate::gateway::RequestContext).

pub mod audit;
pub mod bearer;
mod caller;
pub mod challenge;
pub mod client_ip;
pub mod identity;
pub mod jwk;
pub mod jwks;
pub mod jwt;
pub mod limits;
pub mod policy;

pub use bearer::{Bearer, Refusal};
pub use caller::{Caller, Principal};
pub use challenge::Challenge;
pub use identity::{ClientCertificate, Credentials, IdentityError};
pub use jwt::VerifiedToken;
pub use policy::{Access, Policy};
