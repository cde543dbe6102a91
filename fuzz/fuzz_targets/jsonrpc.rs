//! A JSON-RPC message or batch as a client or downstream sends it: classification, the members
//! the gateway reads, and the error responses it builds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus::mcp::jsonrpc::{self, Kind, RpcError};
use serde_json::Value;

fn envelope(message: &Value) {
    let _ = jsonrpc::method(message);
    let _ = jsonrpc::params(message);
    match jsonrpc::kind(message) {
        Some(Kind::Request) => {
            let id = message["id"].clone();
            let reply = RpcError::new(jsonrpc::METHOD_NOT_FOUND, "no such method").to_response(id);
            assert_eq!(jsonrpc::kind(&reply), Some(Kind::Response));
        }
        Some(Kind::Response) => {
            let _ = RpcError::from_response(message);
        }
        Some(Kind::Notification) | None => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(message) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match &message {
        Value::Array(batch) => batch.iter().for_each(envelope),
        single => envelope(single),
    }
});
