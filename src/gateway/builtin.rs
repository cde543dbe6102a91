//! The gateway's own tools in `tools = "search"` mode: `search` and `execute`.

use serde_json::{Value, json};

use super::search;
use super::visibility::Listing;

/// Name of the search tool.
pub const SEARCH: &str = "search";
/// Name of the execute tool.
pub const EXECUTE: &str = "execute";

/// The two tool definitions listed in search mode.
pub fn definitions() -> Vec<Value> {
    vec![
        json!({
            "name": SEARCH,
            "description": "Search the tools of every MCP server behind this gateway by keywords. \
                Returns the best matches (at most 10) with their descriptions and input schemas. \
                Call `execute` with a returned name and matching arguments to run one. \
                Tool names look like `server__tool`.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "keywords": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Words describing what you want to do, e.g. [\"read\", \"file\"]."
                    }
                },
                "required": ["keywords"]
            },
            "annotations": {"readOnlyHint": true}
        }),
        json!({
            "name": EXECUTE,
            "description": "Run a tool found with `search`: give its exact name and its arguments.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The tool name returned by `search`."},
                    "arguments": {"type": "object", "description": "Arguments matching the tool's input schema."}
                },
                "required": ["name", "arguments"]
            }
        }),
    ]
}

/// Runs `search` over the tools the caller sees and returns a `tools/call` result (text and
/// structured content).
pub fn search(listing: &Listing, arguments: &Value) -> Result<Value, String> {
    let keywords: Vec<&str> = match arguments.get("keywords") {
        // Counted before collecting: a 50,000-word array is refused without copying it.
        Some(Value::Array(items)) if items.len() > search::MAX_QUERY_TOKENS => {
            let tokens = items.len();
            return Err(search::QueryError::TooManyWords { tokens }.to_string());
        }
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(text)) if text.len() > search::MAX_QUERY_BYTES => {
            let bytes = text.len();
            return Err(search::QueryError::TooLong { bytes }.to_string());
        }
        Some(Value::String(text)) => text.split_whitespace().collect(),
        _ => return Err("`search` needs `keywords`: an array of strings".into()),
    };
    let matches = listing
        .search
        .search(&keywords)
        .map_err(|error| error.to_string())?;
    let results: Vec<Value> = matches
        .into_iter()
        .map(|(position, score)| {
            let tool = &listing.tools[position];
            json!({
                "name": tool["name"],
                "description": tool.get("description").cloned().unwrap_or(Value::Null),
                "inputSchema": tool.get("inputSchema").cloned().unwrap_or_else(|| json!({})),
                "score": (score * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    let structured = json!({"results": results});
    Ok(json!({
        "content": [{"type": "text", "text": structured.to_string()}],
        "structuredContent": structured,
    }))
}
