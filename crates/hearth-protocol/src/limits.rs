//! Bounds on what one request may ask of the engine, checked before any of it reaches
//! llama.cpp: by the engine when a request arrives, and by the server in request validation
//! (so it can answer 400 without waiting for the engine). Pure functions over the request's
//! values; each limit's comment says what it protects and what was measured.
//!
//! Figures are from SmolLM2-135M (a 49,152-token vocabulary) on a 2-core x86-64 CPU.

use serde_json::Value;

/// Most JSON values (objects, arrays, strings, numbers, booleans, nulls) in one JSON schema.
/// Bounds the work of the schema-to-grammar conversion and the size of the grammar overall:
/// a schema of 5,000 required properties (10,000 values) converts in 52 ms into a 330 KB
/// grammar; 4,096 values keeps every schema well inside the grammar cap.
pub const MAX_SCHEMA_NODES: usize = 4096;

/// Deepest nesting of JSON values in one schema (a schema level is two or three values deep:
/// `properties`, the name, the schema). llama.cpp converts and parses a schema recursively,
/// one stack frame or more per level; 32 allows about 15 levels of objects, more than the 10
/// OpenAI's structured outputs accept.
pub const MAX_SCHEMA_DEPTH: usize = 32;

/// Most properties of one object. llama.cpp's conversion of an object's optional properties
/// is cubic in their number and recursive, one frame per property: 2,000 optional properties
/// held the engine thread for 15 s and 5,000 overflowed its stack (the worker aborted). Each
/// optional property is also an alternative the grammar checks every candidate token against
/// (measured: 100 cost 88 ms per sampled token, 1,000 cost 950 ms, on the thread that samples
/// for every stream). At 128 the conversion takes about 5 ms and a token about 110 ms at
/// worst (right after `{` or `,`, where every property may follow).
pub const MAX_SCHEMA_PROPERTIES: usize = 128;

/// Most options of one choice: the values of an `enum`, the branches of an `anyOf`, `oneOf`
/// or `allOf`, the types of a `type` list. Like optional properties, each option is an
/// alternative checked against every candidate token where the choice begins (an enum of
/// 1,000 values cost 300 ms per token there, of 5,000 values 3 s); 256 keeps that under
/// about 100 ms.
pub const MAX_SCHEMA_CHOICES: usize = 256;

/// Most bytes of names and strings (keys, string values) in one schema: long names are
/// repeated in the generated grammar's rule names and literals.
pub const MAX_SCHEMA_TEXT_BYTES: usize = 256 * 1024;

/// Most messages in one chat request. Each message is rendered by the chat template and
/// tokenized on the engine thread; 10,000 is far beyond any context a local model has (a
/// message costs at least a few template tokens), and keeps that work bounded.
pub const MAX_CHAT_MESSAGES: usize = 10_000;

/// Why a JSON schema is refused; the message names the limit and where it was crossed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaBoundsError {
    #[error("the JSON schema has more than {max} values (nodes)")]
    TooManyNodes { max: usize },
    #[error("the JSON schema nests deeper than {max} levels at {at}")]
    TooDeep { at: String, max: usize },
    #[error("the object at {at} has {count} properties; at most {max} are allowed")]
    TooManyProperties {
        at: String,
        count: usize,
        max: usize,
    },
    #[error("the `{keyword}` at {at} has {count} options; at most {max} are allowed")]
    TooManyChoices {
        at: String,
        keyword: String,
        count: usize,
        max: usize,
    },
    #[error("the JSON schema's names and strings exceed {max} bytes")]
    TooMuchText { max: usize },
}

/// Checks a JSON schema against [`MAX_SCHEMA_NODES`], [`MAX_SCHEMA_DEPTH`],
/// [`MAX_SCHEMA_PROPERTIES`], [`MAX_SCHEMA_CHOICES`] and [`MAX_SCHEMA_TEXT_BYTES`]. Stops at
/// the first limit crossed, so it costs at most a walk of [`MAX_SCHEMA_NODES`] values
/// whatever the schema's size, and recurses at most [`MAX_SCHEMA_DEPTH`] deep.
pub fn check_json_schema(schema: &Value) -> Result<(), SchemaBoundsError> {
    let mut walk = SchemaWalk {
        nodes: 0,
        text_bytes: 0,
    };
    walk.visit(schema, None, &mut Vec::new())
}

/// Checks the number of messages of a chat request against [`MAX_CHAT_MESSAGES`].
pub fn check_message_count(count: usize) -> Result<(), String> {
    if count > MAX_CHAT_MESSAGES {
        return Err(format!(
            "the chat has {count} messages; at most {MAX_CHAT_MESSAGES} are accepted"
        ));
    }
    Ok(())
}

/// Keywords whose array value is a choice among its elements.
const CHOICE_KEYWORDS: [&str; 5] = ["enum", "anyOf", "oneOf", "allOf", "type"];

struct SchemaWalk {
    nodes: usize,
    text_bytes: usize,
}

impl SchemaWalk {
    /// `key` is the object key `value` sits under, if any; `path` the keys and indices down
    /// to `value`, for messages.
    fn visit<'a>(
        &mut self,
        value: &'a Value,
        key: Option<&str>,
        path: &mut Vec<PathStep<'a>>,
    ) -> Result<(), SchemaBoundsError> {
        self.nodes += 1;
        if self.nodes > MAX_SCHEMA_NODES {
            return Err(SchemaBoundsError::TooManyNodes {
                max: MAX_SCHEMA_NODES,
            });
        }
        if path.len() >= MAX_SCHEMA_DEPTH {
            return Err(SchemaBoundsError::TooDeep {
                at: pointer(path),
                max: MAX_SCHEMA_DEPTH,
            });
        }
        match value {
            Value::String(text) => self.add_text(text.len()),
            Value::Array(items) => {
                if let Some(keyword) = key.filter(|k| CHOICE_KEYWORDS.contains(k)) {
                    if items.len() > MAX_SCHEMA_CHOICES {
                        return Err(SchemaBoundsError::TooManyChoices {
                            at: pointer(path),
                            keyword: keyword.to_string(),
                            count: items.len(),
                            max: MAX_SCHEMA_CHOICES,
                        });
                    }
                }
                for (index, item) in items.iter().enumerate() {
                    path.push(PathStep::Index(index));
                    let visited = self.visit(item, None, path);
                    path.pop();
                    visited?;
                }
                Ok(())
            }
            Value::Object(members) => {
                if key == Some("properties") && members.len() > MAX_SCHEMA_PROPERTIES {
                    return Err(SchemaBoundsError::TooManyProperties {
                        at: pointer(path),
                        count: members.len(),
                        max: MAX_SCHEMA_PROPERTIES,
                    });
                }
                for (name, member) in members {
                    self.add_text(name.len())?;
                    path.push(PathStep::Key(name));
                    let visited = self.visit(member, Some(name), path);
                    path.pop();
                    visited?;
                }
                Ok(())
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }

    fn add_text(&mut self, bytes: usize) -> Result<(), SchemaBoundsError> {
        self.text_bytes = self.text_bytes.saturating_add(bytes);
        if self.text_bytes > MAX_SCHEMA_TEXT_BYTES {
            return Err(SchemaBoundsError::TooMuchText {
                max: MAX_SCHEMA_TEXT_BYTES,
            });
        }
        Ok(())
    }
}

enum PathStep<'a> {
    Key(&'a str),
    Index(usize),
}

/// A JSON pointer (RFC 6901) to where the walk is, `/` for the root; long names are cut.
fn pointer(path: &[PathStep<'_>]) -> String {
    const MAX_SHOWN: usize = 200;
    if path.is_empty() {
        return "/".to_string();
    }
    let mut text = String::new();
    for step in path {
        text.push('/');
        match step {
            PathStep::Key(key) => text.push_str(&key.replace('~', "~0").replace('/', "~1")),
            PathStep::Index(index) => text.push_str(&index.to_string()),
        }
        if text.len() > MAX_SHOWN {
            let cut = (0..=MAX_SHOWN)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push('…');
            break;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object_with_properties(count: usize) -> Value {
        let properties: serde_json::Map<String, Value> = (0..count)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        json!({"type": "object", "properties": properties})
    }

    #[test]
    fn ordinary_schemas_pass() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "age": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}},
                "address": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/address"}]}
            },
            "required": ["name"],
            "$defs": {"address": {"type": "object", "properties": {"city": {"type": "string"}}}}
        });
        assert_eq!(check_json_schema(&schema), Ok(()));
        assert_eq!(
            check_json_schema(&object_with_properties(MAX_SCHEMA_PROPERTIES)),
            Ok(())
        );
    }

    #[test]
    fn the_issues_hostile_schemas_are_refused_with_where_and_why() {
        for count in [2000, 5000] {
            let error = check_json_schema(&object_with_properties(count)).unwrap_err();
            assert_eq!(
                error,
                SchemaBoundsError::TooManyProperties {
                    at: "/properties".into(),
                    count,
                    max: MAX_SCHEMA_PROPERTIES
                }
            );
            assert_eq!(
                error.to_string(),
                format!(
                    "the object at /properties has {count} properties; at most 128 are allowed"
                )
            );
        }
        let nested = json!({"properties": {"a/b": object_with_properties(200)}});
        let error = check_json_schema(&nested).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the object at /properties/a~1b/properties has 200"),
            "{error}"
        );
    }

    #[test]
    fn choices_are_bounded() {
        let values: Vec<Value> = (0..=MAX_SCHEMA_CHOICES).map(|i| json!(i)).collect();
        let error = check_json_schema(&json!({"enum": values})).unwrap_err();
        assert!(matches!(
            error,
            SchemaBoundsError::TooManyChoices { ref keyword, count: 257, .. } if keyword == "enum"
        ));
        let branches: Vec<Value> = (0..300).map(|i| json!({"const": i})).collect();
        let error = check_json_schema(&json!({"items": {"anyOf": branches}})).unwrap_err();
        assert!(
            error.to_string().contains("`anyOf` at /items/anyOf"),
            "{error}"
        );
        // An array that is not a choice is bounded by the node count only.
        let required: Vec<Value> = (0..1000).map(|i| json!(format!("p{i}"))).collect();
        assert_eq!(check_json_schema(&json!({"required": required})), Ok(()));
    }

    #[test]
    fn nodes_depth_and_text_are_bounded() {
        let many: Vec<Value> = (0..MAX_SCHEMA_NODES).map(|i| json!(i)).collect();
        assert_eq!(
            check_json_schema(&json!({"required": many})),
            Err(SchemaBoundsError::TooManyNodes {
                max: MAX_SCHEMA_NODES
            })
        );
        let mut deep = json!({"type": "string"});
        for _ in 0..MAX_SCHEMA_DEPTH {
            deep = json!({"items": deep});
        }
        assert!(matches!(
            check_json_schema(&deep),
            Err(SchemaBoundsError::TooDeep {
                max: MAX_SCHEMA_DEPTH,
                ..
            })
        ));
        let mut shallow = json!({"type": "string"});
        for _ in 0..MAX_SCHEMA_DEPTH - 2 {
            shallow = json!({"items": shallow});
        }
        assert_eq!(check_json_schema(&shallow), Ok(()));
        let long = "x".repeat(MAX_SCHEMA_TEXT_BYTES + 1);
        assert_eq!(
            check_json_schema(&json!({"description": long})),
            Err(SchemaBoundsError::TooMuchText {
                max: MAX_SCHEMA_TEXT_BYTES
            })
        );
    }

    #[test]
    fn a_huge_schema_is_refused_after_a_bounded_walk() {
        // 200,000 values: refused at the node limit, without walking them all.
        let values: Vec<Value> = (0..200_000).map(|i| json!([i])).collect();
        let started = std::time::Instant::now();
        assert!(check_json_schema(&json!({"examples": values})).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn message_counts_are_bounded() {
        assert_eq!(check_message_count(MAX_CHAT_MESSAGES), Ok(()));
        let error = check_message_count(100_000).unwrap_err();
        assert_eq!(
            error,
            "the chat has 100000 messages; at most 10000 are accepted"
        );
    }
}
