//! Keyword search over tool names, descriptions and parameter names (the `search` tool).
//!
//! Scores are a small TF-IDF: a keyword matching a rare token weighs more than one matching a
//! token every tool has. Name matches count most, then parameter names, then descriptions; a
//! keyword that is a prefix of a token counts half.

use std::collections::HashMap;

use serde_json::Value;

/// How many results `search` returns.
pub const LIMIT: usize = 10;

const NAME_WEIGHT: f64 = 3.0;
const PARAMETER_WEIGHT: f64 = 1.5;
const DESCRIPTION_WEIGHT: f64 = 1.0;
const PREFIX_FACTOR: f64 = 0.5;
const MIN_PREFIX: usize = 3;

/// The searchable text of one tool, tokenized once when the catalog is built.
#[derive(Debug, Default)]
struct Document {
    name: Vec<String>,
    parameters: Vec<String>,
    description: Vec<String>,
}

/// An index over the exposed tools, in catalog order.
#[derive(Debug, Default)]
pub struct Index {
    documents: Vec<Document>,
    document_frequency: HashMap<String, usize>,
}

impl Index {
    /// Indexes `tools` (exposed definitions, with their exposed names).
    pub fn build(tools: &[Value]) -> Self {
        let documents: Vec<Document> = tools.iter().map(document).collect();
        let mut document_frequency = HashMap::new();
        for document in &documents {
            let mut seen: Vec<&String> = document
                .name
                .iter()
                .chain(&document.parameters)
                .chain(&document.description)
                .collect();
            seen.sort();
            seen.dedup();
            for token in seen {
                *document_frequency.entry(token.clone()).or_insert(0) += 1;
            }
        }
        Self {
            documents,
            document_frequency,
        }
    }

    /// The best matches for `keywords`: (tool position, score), best first, at most [`LIMIT`].
    pub fn search(&self, keywords: &[String]) -> Vec<(usize, f64)> {
        let query: Vec<String> = keywords
            .iter()
            .flat_map(|keyword| tokenize(keyword))
            .collect();
        let mut scored: Vec<(usize, f64)> = self
            .documents
            .iter()
            .enumerate()
            .map(|(position, document)| (position, self.score(document, &query)))
            .filter(|(_, score)| *score > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(LIMIT);
        scored
    }

    fn score(&self, document: &Document, query: &[String]) -> f64 {
        query
            .iter()
            .map(|keyword| {
                let fields = [
                    (&document.name, NAME_WEIGHT),
                    (&document.parameters, PARAMETER_WEIGHT),
                    (&document.description, DESCRIPTION_WEIGHT),
                ];
                fields
                    .iter()
                    .map(|(tokens, weight)| weight * self.best_match(tokens, keyword))
                    .sum::<f64>()
            })
            .sum()
    }

    /// The weight of the best token in `tokens` for `keyword`: IDF for an exact match, half
    /// for a prefix match.
    fn best_match(&self, tokens: &[String], keyword: &str) -> f64 {
        tokens
            .iter()
            .map(|token| {
                let idf = self.idf(token);
                if token == keyword {
                    idf
                } else if keyword.len() >= MIN_PREFIX && token.starts_with(keyword) {
                    idf * PREFIX_FACTOR
                } else {
                    0.0
                }
            })
            .fold(0.0, f64::max)
    }

    fn idf(&self, token: &str) -> f64 {
        let total = self.documents.len() as f64;
        let frequency = self.document_frequency.get(token).copied().unwrap_or(0) as f64;
        (1.0 + total / (1.0 + frequency)).ln()
    }
}

fn document(tool: &Value) -> Document {
    let text = |pointer: &str| tool.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let parameters = tool
        .pointer("/inputSchema/properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().flat_map(|key| tokenize(key)).collect())
        .unwrap_or_default();
    Document {
        name: tokenize(text("/name")),
        parameters,
        description: tokenize(text("/description")),
    }
}

/// Lowercase words, split at non-alphanumerics and at camelCase boundaries.
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for character in text.chars() {
        if !character.is_alphanumeric() {
            flush(&mut current, &mut tokens);
            previous_lower = false;
            continue;
        }
        if character.is_uppercase() && previous_lower {
            flush(&mut current, &mut tokens);
        }
        previous_lower = character.is_lowercase() || character.is_numeric();
        current.extend(character.to_lowercase());
    }
    flush(&mut current, &mut tokens);
    tokens
}

fn flush(current: &mut String, tokens: &mut Vec<String>) {
    if !current.is_empty() {
        tokens.push(std::mem::take(current));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tools() -> Vec<Value> {
        vec![
            json!({"name": "local__echo", "description": "Echoes back the input", "inputSchema": {"properties": {"message": {}}}}),
            json!({"name": "local__get-sum", "description": "Returns the sum of two numbers", "inputSchema": {"properties": {"a": {}, "b": {}}}}),
            json!({"name": "files__readFile", "description": "Read a file from disk", "inputSchema": {"properties": {"path": {}}}}),
        ]
    }

    #[test]
    fn tokenizes_snake_kebab_and_camel_case() {
        assert_eq!(
            tokenize("files__readFile get-sum HTTPServer"),
            ["files", "read", "file", "get", "sum", "httpserver"]
        );
    }

    #[test]
    fn name_beats_description_and_misses_are_dropped() {
        let index = Index::build(&tools());
        let results = index.search(&["sum".into()]);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].0, 1);
        assert!(index.search(&["zebra".into()]).is_empty());
    }

    #[test]
    fn parameter_names_and_prefixes_match() {
        let index = Index::build(&tools());
        assert_eq!(index.search(&["path".into()])[0].0, 2);
        assert_eq!(index.search(&["mess".into()])[0].0, 0);
    }

    #[test]
    fn at_most_ten_results() {
        let many: Vec<Value> = (0..25)
            .map(|i| json!({"name": format!("s__tool{i}"), "description": "common"}))
            .collect();
        assert_eq!(Index::build(&many).search(&["common".into()]).len(), LIMIT);
    }
}
