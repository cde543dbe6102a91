//! JSON-RPC 2.0 over `serde_json::Value`: classification, builders and error codes.

use serde_json::{Map, Value, json};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// A downstream server could not serve the call (down, restarting, transport failure).
pub const DOWNSTREAM_UNAVAILABLE: i64 = -32000;
/// A downstream server did not answer in time.
pub const DOWNSTREAM_TIMEOUT: i64 = -32001;
/// The gateway is at one of its limits (sessions, connections); retry later.
pub const SERVER_BUSY: i64 = -32003;
/// A server's rate limit was reached.
pub const RATE_LIMITED: i64 = -32029;
/// MCP: resource not found (handshake era).
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// What a JSON-RPC message is, decided from its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`.
    Response,
}

/// Classifies a message, or `None` when it is not a JSON-RPC 2.0 object.
pub fn kind(message: &Value) -> Option<Kind> {
    let object = message.as_object()?;
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return None;
    }
    let has_id = object.get("id").is_some_and(is_valid_id);
    match (object.get("method").and_then(Value::as_str), has_id) {
        (Some(_), true) => Some(Kind::Request),
        (Some(_), false) if !object.contains_key("id") => Some(Kind::Notification),
        (None, true) if object.contains_key("result") || object.contains_key("error") => {
            Some(Kind::Response)
        }
        _ => None,
    }
}

/// JSON-RPC ids are strings or numbers (MCP forbids null).
fn is_valid_id(id: &Value) -> bool {
    id.is_string() || id.is_number()
}

/// The `method` member, if any.
pub fn method(message: &Value) -> Option<&str> {
    message.get("method").and_then(Value::as_str)
}

/// The `params` member, if it is an object.
pub fn params(message: &Value) -> Option<&Map<String, Value>> {
    message.get("params").and_then(Value::as_object)
}

/// A success response.
pub fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response.
pub fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// The -32600 answer to something that is not a JSON-RPC 2.0 message: with its `id` when it
/// has a valid one, else with a null id (as the specification asks).
pub fn invalid_request(message: &Value) -> Value {
    let id = message
        .get("id")
        .filter(|id| is_valid_id(id))
        .cloned()
        .unwrap_or(Value::Null);
    error(
        id,
        INVALID_REQUEST,
        "Invalid Request: not a JSON-RPC 2.0 message",
    )
}

/// An error response with `data`.
pub fn error_with_data(id: Value, code: i64, message: impl Into<String>, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into(), "data": data}})
}

/// A request.
pub fn request(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A notification (with `params` only when given).
pub fn notification(method: &str, params: Option<Value>) -> Value {
    let mut message = json!({"jsonrpc": "2.0", "method": method});
    if let Some(params) = params {
        message["params"] = params;
    }
    message
}

/// A JSON-RPC error object carried as a Rust error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// JSON-RPC error code.
    pub code: i64,
    /// Human-readable message shown to the client.
    pub message: String,
    /// Optional `data`.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The error response for request `id`.
    pub fn to_response(&self, id: Value) -> Value {
        match &self.data {
            Some(data) => error_with_data(id, self.code, self.message.clone(), data.clone()),
            None => error(id, self.code, self.message.clone()),
        }
    }

    /// Reads the `error` member of a response.
    pub fn from_response(response: &Value) -> Option<Self> {
        let error = response.get("error")?;
        Some(Self {
            code: error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(INTERNAL_ERROR),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            data: error.get("data").cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        assert_eq!(
            kind(&json!({"jsonrpc":"2.0","id":1,"method":"ping"})),
            Some(Kind::Request)
        );
        assert_eq!(
            kind(&json!({"jsonrpc":"2.0","method":"x"})),
            Some(Kind::Notification)
        );
        assert_eq!(
            kind(&json!({"jsonrpc":"2.0","id":"a","result":{}})),
            Some(Kind::Response)
        );
        assert_eq!(
            kind(&json!({"jsonrpc":"2.0","id":1,"error":{}})),
            Some(Kind::Response)
        );
        assert_eq!(kind(&json!({"jsonrpc":"2.0","id":null,"method":"x"})), None);
        assert_eq!(kind(&json!({"jsonrpc":"1.0","id":1,"method":"x"})), None);
        assert_eq!(kind(&json!([1])), None);
    }

    #[test]
    fn invalid_requests_keep_a_valid_id_only() {
        let answer = invalid_request(&json!({"jsonrpc": "2.0", "id": 4}));
        assert_eq!(answer["id"], 4);
        assert_eq!(answer["error"]["code"], INVALID_REQUEST);
        assert_eq!(invalid_request(&json!(1))["id"], Value::Null);
        assert_eq!(invalid_request(&json!({"id": [1]}))["id"], Value::Null);
    }

    #[test]
    fn ids_beyond_64_bits_stay_byte_exact() {
        let text = r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#;
        let message: Value = serde_json::from_str(text).unwrap();
        let answer = result(message["id"].clone(), json!({}));
        assert_eq!(
            answer.to_string(),
            r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"result":{}}"#
        );
    }

    #[test]
    fn error_round_trip() {
        let error = RpcError {
            code: -1,
            message: "m".into(),
            data: Some(json!({"k": 1})),
        };
        assert_eq!(
            RpcError::from_response(&error.to_response(json!(7))),
            Some(error)
        );
    }
}
