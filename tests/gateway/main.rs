//! Integration tests of the gateway against real MCP software, in one test binary.

mod everything;
mod reload;
mod support;
