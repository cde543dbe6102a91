//! SEP-2243 custom headers (2026-07-28): a tool's input schema may mark a property with
//! `x-mcp-header: "Token"`, and a `tools/call` over Streamable HTTP then mirrors that argument
//! in `Mcp-Param-Token`, so intermediaries can route on it without reading the body. A server
//! must reject a call whose headers and arguments disagree (400, -32020); a client (here: the
//! gateway toward a downstream) must send them.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::era;

/// Prefix of the header an `x-mcp-header` token names.
const PREFIX: &str = "mcp-param-";
/// The schema annotation.
const ANNOTATION: &str = "x-mcp-header";
/// How deep nested `properties` are followed (a schema is finite, but a hostile one may nest
/// deeply).
const MAX_DEPTH: usize = 16;

/// One annotated property: its path of `properties` keys from the root, and its header name.
#[derive(Debug, PartialEq, Eq)]
struct Declared {
    path: Vec<String>,
    header: HeaderName,
}

/// The annotated properties of a tool's input schema, reachable through `properties` only (an
/// annotation anywhere else, or one that is no header token, declares nothing, as conforming
/// clients ignore it too).
fn declared(schema: &Value) -> Vec<Declared> {
    let mut found = Vec::new();
    walk(schema, &mut Vec::new(), &mut found);
    found
}

fn walk(schema: &Value, path: &mut Vec<String>, found: &mut Vec<Declared>) {
    if path.len() > MAX_DEPTH {
        return;
    }
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, property) in properties {
        path.push(key.clone());
        let token = property.get(ANNOTATION).and_then(Value::as_str);
        if let Some(header) = token.and_then(header_name) {
            found.push(Declared {
                path: path.clone(),
                header,
            });
        }
        walk(property, path, found);
        path.pop();
    }
}

fn header_name(token: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(format!("{PREFIX}{token}").as_bytes()).ok()
}

/// The argument at `path`, unless absent or null.
fn argument<'a>(arguments: &'a Value, path: &[String]) -> Option<&'a Value> {
    let value = path
        .iter()
        .try_fold(arguments, |node, key| node.get(key.as_str()))?;
    (!value.is_null()).then_some(value)
}

/// An argument as its header carries it: booleans as `true`/`false`, numbers and strings as
/// written; objects and arrays have no header form.
fn render(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        _ => None,
    }
}

/// The `Mcp-Param-*` headers a call of a tool with `schema` and `arguments` carries.
pub fn headers(schema: &Value, arguments: &Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for declared in declared(schema) {
        let rendered = argument(arguments, &declared.path).and_then(render);
        let value =
            rendered.and_then(|text| HeaderValue::from_str(&era::encode_header_value(&text)).ok());
        if let Some(value) = value {
            headers.insert(declared.header, value);
        }
    }
    headers
}

/// Checks a call's `Mcp-Param-*` headers against its arguments as a server must: each present
/// exactly when its argument is, once, and equal to it after decoding (`=?base64?…?=`, strict).
/// The error names the header and what is wrong.
pub fn check(schema: &Value, arguments: &Value, headers: &HeaderMap) -> Result<(), String> {
    for declared in declared(schema) {
        let name = declared.header.as_str();
        let mut sent = headers.get_all(&declared.header).iter();
        let (raw, again) = (sent.next(), sent.next());
        if again.is_some() {
            return Err(format!("{name} header appears more than once"));
        }
        let value = argument(arguments, &declared.path);
        let argument = declared.path.join(".");
        match (raw, value.and_then(render)) {
            (None, None) => {}
            (Some(_), None) if value.is_none() => {
                return Err(format!(
                    "{name} header is present but argument `{argument}` is absent"
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{name} header is missing but argument `{argument}` is present"
                ));
            }
            (Some(raw), expected) => {
                let decoded = raw.to_str().ok().and_then(era::decode_header_value);
                if decoded.is_none() || decoded != expected {
                    return Err(format!(
                        "{name} header does not match argument `{argument}`"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "nested": {"type": "object", "properties": {"on": {"type": "boolean", "x-mcp-header": "On"}}},
            "plain": {"type": "string"},
        }})
    }

    fn sent(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn headers_mirror_the_annotated_arguments() {
        let arguments = json!({"region": "été", "count": 3, "nested": {"on": true}, "plain": "x"});
        let headers = headers(&schema(), &arguments);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers["mcp-param-region"], "=?base64?w6l0w6k=?=");
        assert_eq!(headers["mcp-param-count"], "3");
        assert_eq!(headers["mcp-param-on"], "true");
        assert_eq!(check(&schema(), &arguments, &headers), Ok(()));
    }

    #[test]
    fn a_mismatch_a_missing_header_and_bad_base64_are_rejected() {
        let arguments = json!({"region": "Hello"});
        let check = |pairs: &[(&str, &str)]| check(&schema(), &arguments, &sent(pairs));
        assert_eq!(
            check(&[("Mcp-Param-Region", "=?base64?SGVsbG8=?=")]),
            Ok(())
        );
        assert!(check(&[]).unwrap_err().contains("missing"));
        assert!(
            check(&[("Mcp-Param-Region", "Bye")])
                .unwrap_err()
                .contains("does not match")
        );
        for bad in ["=?base64?SGVsbG8?=", "=?base64?SGVs!!!bG8=?="] {
            assert!(check(&[("Mcp-Param-Region", bad)]).is_err(), "{bad}");
        }
        let twice = [("Mcp-Param-Region", "Hello"), ("mcp-param-region", "Hello")];
        assert!(check(&twice).unwrap_err().contains("more than once"));
        let extra = [("Mcp-Param-Region", "Hello"), ("Mcp-Param-Count", "1")];
        assert!(check(&extra).unwrap_err().contains("absent"));
    }

    #[test]
    fn values_without_the_full_sentinel_are_literal() {
        let literal = "=?base64?SGVsbG8=";
        let arguments = json!({"region": literal});
        let headers = sent(&[("Mcp-Param-Region", literal)]);
        assert_eq!(check(&schema(), &arguments, &headers), Ok(()));
    }
}
