//! Keyword search over tool names, descriptions and parameter names (the `search` tool).
//!
//! Scores are a small TF-IDF: a keyword matching a rare token weighs more than one matching a
//! token every tool has. Name matches count most, then parameter names, then descriptions; a
//! keyword that is a prefix of a token counts half.
//!
//! The index is inverted (token -> the fields it occurs in), so a query costs a map lookup per
//! query token plus the postings it matches, never query tokens x catalog tokens; and a query
//! is capped ([`MAX_QUERY_TOKENS`], [`MAX_QUERY_BYTES`]), so one `search` stays far below a
//! millisecond and runs on the I/O worker without delaying other requests.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// How many results `search` returns.
pub const LIMIT: usize = 10;
/// Most words (after splitting keywords at punctuation and camelCase) one query may have.
pub const MAX_QUERY_TOKENS: usize = 32;
/// Most bytes of keyword text one query may have.
pub const MAX_QUERY_BYTES: usize = 1024;

const NAME_WEIGHT: f64 = 3.0;
const PARAMETER_WEIGHT: f64 = 1.5;
const DESCRIPTION_WEIGHT: f64 = 1.0;
const PREFIX_FACTOR: f64 = 0.5;
const MIN_PREFIX: usize = 3;

/// The fields of a tool, by weight.
const FIELD_WEIGHTS: [f64; 3] = [NAME_WEIGHT, PARAMETER_WEIGHT, DESCRIPTION_WEIGHT];

/// Why a query was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// More keyword text than [`MAX_QUERY_BYTES`].
    #[error(
        "`search` keywords take {bytes} bytes, more than the {MAX_QUERY_BYTES} a query may have; use a few words"
    )]
    TooLong {
        /// The query's size.
        bytes: usize,
    },
    /// More words than [`MAX_QUERY_TOKENS`].
    #[error(
        "`search` keywords make {tokens} words, more than the {MAX_QUERY_TOKENS} a query may have; use a few words"
    )]
    TooManyWords {
        /// The query's words.
        tokens: usize,
    },
}

/// A tool position and the field a token occurs in (an index into [`FIELD_WEIGHTS`]).
type Posting = (u32, u8);

/// An index over the exposed tools, in catalog order.
#[derive(Debug, Default)]
pub struct Index {
    /// Token -> (IDF, where it occurs, each (tool, field) once). Sorted, so the tokens a
    /// keyword is a prefix of are one range.
    tokens: BTreeMap<String, (f64, Vec<Posting>)>,
}

impl Index {
    /// Indexes `tools` (exposed definitions, with their exposed names).
    pub fn build(tools: &[Value]) -> Self {
        let mut postings: BTreeMap<String, Vec<Posting>> = BTreeMap::new();
        for (position, tool) in tools.iter().enumerate() {
            let position = u32::try_from(position).expect("BUG: fewer than 2^32 tools");
            for (field, tokens) in (0u8..).zip(fields(tool)) {
                for token in tokens {
                    let list = postings.entry(token).or_default();
                    if list.last() != Some(&(position, field)) {
                        list.push((position, field));
                    }
                }
            }
        }
        let total = tools.len() as f64;
        let tokens = postings
            .into_iter()
            .map(|(token, list)| {
                let mut tools: Vec<u32> = list.iter().map(|(position, _)| *position).collect();
                tools.dedup();
                let idf = (1.0 + total / (1.0 + tools.len() as f64)).ln();
                (token, (idf, list))
            })
            .collect();
        Self { tokens }
    }

    /// The best matches for `keywords`: (tool position, score), best first, at most [`LIMIT`].
    pub fn search(&self, keywords: &[&str]) -> Result<Vec<(usize, f64)>, QueryError> {
        let bytes: usize = keywords.iter().map(|keyword| keyword.len()).sum();
        if bytes > MAX_QUERY_BYTES {
            return Err(QueryError::TooLong { bytes });
        }
        let mut query: HashMap<String, usize> = HashMap::new();
        let mut words = 0;
        for token in keywords.iter().flat_map(|keyword| tokenize(keyword)) {
            words += 1;
            *query.entry(token).or_default() += 1;
        }
        if words > MAX_QUERY_TOKENS {
            return Err(QueryError::TooManyWords { tokens: words });
        }
        let mut scores: HashMap<u32, f64> = HashMap::new();
        for (keyword, count) in &query {
            for (position, score) in self.keyword_scores(keyword) {
                *scores.entry(position).or_default() += score * *count as f64;
            }
        }
        let mut scored: Vec<(usize, f64)> = scores
            .into_iter()
            .map(|(position, score)| (position as usize, score))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(LIMIT);
        Ok(scored)
    }

    /// Each matching tool's score for one keyword: per field, the best token (IDF for an exact
    /// match, half for a token the keyword is a prefix of), weighted by the field.
    fn keyword_scores(&self, keyword: &str) -> HashMap<u32, f64> {
        let mut best: HashMap<u32, [f64; 3]> = HashMap::new();
        let prefixes = keyword.len() >= MIN_PREFIX;
        for (token, (idf, postings)) in self.tokens.range(keyword.to_owned()..) {
            let weight = if token == keyword {
                *idf
            } else if prefixes && token.starts_with(keyword) {
                idf * PREFIX_FACTOR
            } else {
                break;
            };
            for (position, field) in postings {
                let slot = &mut best.entry(*position).or_default()[usize::from(*field)];
                *slot = slot.max(weight);
            }
        }
        best.into_iter()
            .map(|(position, fields)| {
                let score = fields.iter().zip(FIELD_WEIGHTS).map(|(b, w)| b * w).sum();
                (position, score)
            })
            .collect()
    }
}

/// A tool's tokens by field, in [`FIELD_WEIGHTS`] order: name, parameters, description.
fn fields(tool: &Value) -> [Vec<String>; 3] {
    let text = |pointer: &str| tool.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let parameters = tool
        .pointer("/inputSchema/properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().flat_map(|key| tokenize(key)).collect())
        .unwrap_or_default();
    [
        tokenize(text("/name")),
        parameters,
        tokenize(text("/description")),
    ]
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
        let results = index.search(&["sum"]).unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].0, 1);
        assert!(index.search(&["zebra"]).unwrap().is_empty());
    }

    #[test]
    fn parameter_names_and_prefixes_match() {
        let index = Index::build(&tools());
        assert_eq!(index.search(&["path"]).unwrap()[0].0, 2);
        assert_eq!(index.search(&["mess"]).unwrap()[0].0, 0);
    }

    #[test]
    fn at_most_ten_results() {
        let many: Vec<Value> = (0..25)
            .map(|i| json!({"name": format!("s__tool{i}"), "description": "common"}))
            .collect();
        assert_eq!(
            Index::build(&many).search(&["common"]).unwrap().len(),
            LIMIT
        );
    }

    #[test]
    fn queries_beyond_the_caps_are_refused() {
        let index = Index::build(&tools());
        let words: Vec<String> = (0..=MAX_QUERY_TOKENS).map(|i| format!("w{i}")).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(
            index.search(&words),
            Err(QueryError::TooManyWords {
                tokens: MAX_QUERY_TOKENS + 1
            })
        );
        let long = "x".repeat(MAX_QUERY_BYTES + 1);
        assert_eq!(
            index.search(&[&long]),
            Err(QueryError::TooLong {
                bytes: MAX_QUERY_BYTES + 1
            })
        );
        assert!(index.search(&words[..MAX_QUERY_TOKENS]).is_ok());
    }

    #[test]
    fn repeated_keywords_count_again_and_fields_add_up() {
        let index = Index::build(&tools());
        let once = index.search(&["file"]).unwrap()[0].1;
        let twice = index.search(&["file", "file"]).unwrap()[0].1;
        assert!((twice - 2.0 * once).abs() < 1e-9);
        // "file" is in the name (readFile) and the description of tool 2: both fields count.
        let idf = (1.0f64 + 3.0 / 2.0).ln();
        assert!((once - idf * (NAME_WEIGHT + DESCRIPTION_WEIGHT)).abs() < 1e-9);
    }
}
