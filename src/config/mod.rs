//! `nexus.toml`: raw input, `{{ env.X }}` templating, resolution into [`model`] types.

pub mod model;

pub use model::*;
