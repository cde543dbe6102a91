//! The stateless revision (2026-07-28): its envelope, headers, error codes and result shape.

use http::StatusCode;
use serde_json::{Value, json};

/// The stateless revisions the front end serves.
pub const STATELESS_REVISIONS: &[&str] = &["2026-07-28"];

/// `_meta` key of the protocol revision a stateless request uses.
pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client's capabilities.
pub const CLIENT_CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the lowest log level the client wants on this request's stream.
pub const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key identifying the server on results.
pub const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key tying notifications to the `subscriptions/listen` stream that carries them.
pub const SUBSCRIPTION_ID_KEY: &str = "io.modelcontextprotocol/subscriptionId";

/// A header disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// The request needs a client capability the client did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// The request's protocol revision is not served.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// `Mcp-Method`.
pub const METHOD_HEADER: &str = "mcp-method";
/// `Mcp-Name`.
pub const NAME_HEADER: &str = "mcp-name";

/// RFC 5424 severities as MCP names them, least severe first.
pub const LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Position of a level name in [`LEVELS`].
pub fn level_index(level: &str) -> Option<usize> {
    LEVELS.iter().position(|known| *known == level)
}

/// Whether a `notifications/message` reaches a handshake-era client whose lowest wanted level
/// is `min` (an index into [`LEVELS`]): a message without a level counts as `info`, one with a
/// level not in [`LEVELS`] as `debug`.
pub fn log_wanted(message: &Value, min: usize) -> bool {
    let level = message
        .pointer("/params/level")
        .and_then(Value::as_str)
        .unwrap_or("info");
    level_index(level).unwrap_or(0) >= min
}

/// The body parameter a method's `Mcp-Name` header mirrors.
pub fn name_parameter(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// The protocol revision a request's `_meta` envelope names, if it has one.
pub fn envelope_version(message: &Value) -> Option<&str> {
    message
        .pointer("/params/_meta")
        .and_then(|meta| meta.get(PROTOCOL_VERSION_KEY))
        .and_then(Value::as_str)
}

/// Decodes a header value, including the `=?base64?…?=` form used for non-ASCII names. Only
/// canonical base64 decodes (padded, no stray characters): the form an encoder emits, so a
/// corrupt header never matches a body value by accident.
pub fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = openssl::base64::decode_block(encoded).ok()?;
            if openssl::base64::encode_block(&bytes) != encoded {
                return None;
            }
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

/// Encodes a header value: as is when it is visible ASCII, else as `=?base64?…?=`.
pub fn encode_header_value(value: &str) -> String {
    if value.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
        value.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            openssl::base64::encode_block(value.as_bytes())
        )
    }
}

/// The HTTP status for a JSON-RPC error in the stateless era.
pub fn http_status(code: i64) -> StatusCode {
    use crate::mcp::jsonrpc::{INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR};
    match code {
        PARSE_ERROR
        | INVALID_REQUEST
        | INVALID_PARAMS
        | HEADER_MISMATCH
        | MISSING_REQUIRED_CLIENT_CAPABILITY
        | UNSUPPORTED_PROTOCOL_VERSION => StatusCode::BAD_REQUEST,
        METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

/// The gateway's identity, as results carry it.
pub fn server_info() -> Value {
    json!({"name": "nexus", "version": env!("CARGO_PKG_VERSION")})
}

/// Adds what a stateless result must carry: `resultType` (downstreams of the handshake era
/// send none, which means "complete") and the server's identity.
pub fn stateless_result(mut response: Value) -> Value {
    if let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) {
        result
            .entry("resultType")
            .or_insert_with(|| Value::from("complete"));
        let meta = result.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.entry(SERVER_INFO_KEY).or_insert_with(server_info);
        }
    }
    response
}

/// How long clients may cache a list or a read: not at all, since a downstream can change
/// them at any moment (clients learn of list changes through `subscriptions/listen`).
pub const UNCACHED_TTL_MS: u64 = 0;

/// Adds the caching hints a list or read result must carry since 2026-07-28, unless the
/// downstream gave its own: not cached, and never shared between clients.
pub fn add_cache_hints(response: &mut Value) {
    if let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) {
        result
            .entry("ttlMs")
            .or_insert_with(|| Value::from(UNCACHED_TTL_MS));
        result
            .entry("cacheScope")
            .or_insert_with(|| Value::from("private"));
    }
}

/// Error codes that changed: "resource not found" is `-32602` (invalid params) since
/// 2026-07-28, where handshake-era servers (and the gateway's catalog) answer `-32002`.
pub fn stateless_error(mut response: Value) -> Value {
    if let Some(code) = response.pointer_mut("/error/code")
        && code.as_i64() == Some(crate::mcp::jsonrpc::RESOURCE_NOT_FOUND)
    {
        *code = Value::from(crate::mcp::jsonrpc::INVALID_PARAMS);
    }
    response
}

/// Removes the stateless envelope from a request's `_meta` before it goes to a downstream of
/// the handshake era (which would not understand it); other `_meta` keys, such as
/// `progressToken`, stay.
pub fn strip_envelope(params: &mut Value) {
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/"));
        if meta.is_empty() {
            params.as_object_mut().map(|params| params.remove("_meta"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_header_values() {
        assert_eq!(
            decode_header_value("=?base64?w6ljaG8=?=").as_deref(),
            Some("écho")
        );
        assert_eq!(decode_header_value("echo").as_deref(), Some("echo"));
        assert_eq!(
            decode_header_value(&encode_header_value("écho")).as_deref(),
            Some("écho")
        );
        assert_eq!(encode_header_value("get-sum"), "get-sum");
    }

    #[test]
    fn stateless_results_gain_result_type_and_server_info() {
        let shaped =
            stateless_result(json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}));
        assert_eq!(shaped["result"]["resultType"], "complete");
        assert_eq!(shaped["result"]["_meta"][SERVER_INFO_KEY]["name"], "nexus");
    }

    #[test]
    fn the_envelope_is_stripped_but_progress_stays() {
        let mut params =
            json!({"name": "x", "_meta": {PROTOCOL_VERSION_KEY: "2026-07-28", "progressToken": 3}});
        strip_envelope(&mut params);
        assert_eq!(params, json!({"name": "x", "_meta": {"progressToken": 3}}));
        let mut bare = json!({"_meta": {PROTOCOL_VERSION_KEY: "2026-07-28"}});
        strip_envelope(&mut bare);
        assert_eq!(bare, json!({}));
    }
}
