//! A client as an attacker: every bound the front end puts on what one client (with no session
//! or token) can cost the gateway, each shown to hold while another client is served.

mod http2;
mod jsonrpc;
mod search;
