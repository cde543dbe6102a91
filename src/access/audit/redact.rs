//! Argument values for audit records, with the values of secret-looking keys replaced.

use serde_json::Value;

/// What a redacted value is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// Words that make a key secret-looking, matched case-insensitively against the key's words
/// (`api_key`, `apiKey`, `X-Api-Key` all have the word `key`; `keyword` and `monkey` do not).
const SECRET_WORDS: [&str; 12] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "key",
    "authorization",
    "auth",
    "credential",
    "credentials",
    "cookie",
    "pin",
];

/// Joined forms that are written as one word (`apikey`, `accesstoken`...).
const SECRET_INFIXES: [&str; 6] = [
    "password",
    "secret",
    "token",
    "credential",
    "apikey",
    "privatekey",
];

/// `value` with every secret-looking key's value replaced by [`REDACTED`], at any depth.
pub fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = if is_secret(key) {
                        Value::from(REDACTED)
                    } else {
                        redacted(value)
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// Whether `key` names a secret.
pub fn is_secret(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    if SECRET_INFIXES.iter().any(|infix| lower.contains(infix)) {
        return true;
    }
    words(key).any(|word| SECRET_WORDS.contains(&word.as_str()))
}

/// The words of `snake_case`, `kebab-case`, `camelCase` and `dotted.keys`, lowercased.
fn words(key: &str) -> impl Iterator<Item = String> + '_ {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            words.push(std::mem::take(&mut current));
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    words.push(current);
    words.into_iter().filter(|word| !word.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_looking_keys_are_redacted_at_any_depth() {
        let arguments = json!({
            "query": "weather",
            "Password": "hunter2",
            "nested": {"apiKey": "k1", "items": [{"client_secret": "s"}, {"note": "keep"}]},
            "X-Auth-Token": "t",
            "Authorization": "Bearer abc",
            "db_credentials": {"user": "u"},
            "keyword": "visible",
            "monkey": "visible",
        });
        assert_eq!(
            redacted(&arguments),
            json!({
                "query": "weather",
                "Password": REDACTED,
                "nested": {"apiKey": REDACTED, "items": [{"client_secret": REDACTED}, {"note": "keep"}]},
                "X-Auth-Token": REDACTED,
                "Authorization": REDACTED,
                "db_credentials": REDACTED,
                "keyword": "visible",
                "monkey": "visible",
            })
        );
    }
}
