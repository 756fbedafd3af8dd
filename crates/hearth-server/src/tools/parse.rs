//! Reading tool calls out of a model's text: pure functions, one per format, tried in turn.
//!
//! - Hermes / Qwen: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, any number, with
//!   text around them (the text stays content);
//! - Mistral: `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]`, or the newer
//!   `[TOOL_CALLS]name[ARGS]{…}`;
//! - Llama 3.x: `{"name": …, "parameters": {…}}` (after `<|python_tag|>` or alone), several
//!   separated by `;`;
//! - the generic fallback: the whole answer one JSON call object (`arguments` or
//!   `parameters`), or an array of them, also inside a Markdown code fence; this is also what
//!   a grammar-forced call looks like.
//!
//! A call counts only when its name is one of the request's tools and its arguments are a JSON
//! object (arguments given as a string must parse as one). When any call of a block fails,
//! the whole block stays content: text that is not a valid call is never passed on as one.

use hearth_protocol::ToolDefinition;
use serde_json::{Map, Value};

/// Hermes' and Qwen's call markers.
pub const HERMES_OPEN: &str = "<tool_call>";
pub const HERMES_CLOSE: &str = "</tool_call>";
/// Mistral's call marker, and its newer format's separator of name and arguments.
pub const MISTRAL_MARKER: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
/// Llama 3.x's marker before a call.
pub const LLAMA_PYTHON_TAG: &str = "<|python_tag|>";

/// One call read from the text: a known tool's name and its arguments (a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    pub name: String,
    pub arguments: Value,
}

/// An answer split into its words and its calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedOutput {
    pub content: String,
    pub calls: Vec<ParsedCall>,
}

/// One format's parser: the text, and whether a name is one of the request's tools.
type Parser = fn(&str, &dyn Fn(&str) -> bool) -> Option<ParsedOutput>;

/// Reads the calls in `text` (see the module comment); without any, the text is all content.
pub fn parse_tool_calls(text: &str, tools: &[ToolDefinition]) -> ParsedOutput {
    let known = |name: &str| tools.iter().any(|tool| tool.name == name);
    let parsers: [Parser; 4] = [parse_hermes, parse_mistral, parse_llama, parse_generic_json];
    for parser in parsers {
        if let Some(parsed) = parser(text, &known) {
            if !parsed.calls.is_empty() {
                return parsed;
            }
        }
    }
    ParsedOutput {
        content: text.to_string(),
        calls: Vec::new(),
    }
}

/// `<tool_call>…</tool_call>` blocks (the last may lack its close at the end of the text).
fn parse_hermes(text: &str, known: &dyn Fn(&str) -> bool) -> Option<ParsedOutput> {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(HERMES_OPEN) {
        content.push_str(&rest[..start]);
        let after = &rest[start + HERMES_OPEN.len()..];
        let (inner, next) = match after.find(HERMES_CLOSE) {
            Some(end) => (&after[..end], &after[end + HERMES_CLOSE.len()..]),
            None => (after, ""),
        };
        calls.push(call_from_value(
            &serde_json::from_str(inner.trim()).ok()?,
            known,
        )?);
        rest = next;
    }
    content.push_str(rest);
    Some(ParsedOutput {
        content: content.trim().to_string(),
        calls,
    })
}

/// `[TOOL_CALLS][{…}, …]` or `[TOOL_CALLS]name[ARGS]{…}` (repeated).
fn parse_mistral(text: &str, known: &dyn Fn(&str) -> bool) -> Option<ParsedOutput> {
    let start = text.find(MISTRAL_MARKER)?;
    let content = text[..start].trim().to_string();
    let body = text[start + MISTRAL_MARKER.len()..].trim();
    let mut calls = Vec::new();
    if body.starts_with('[') {
        calls = calls_from_value(&serde_json::from_str(body).ok()?, known)?;
    } else {
        for part in body.split(MISTRAL_MARKER) {
            let (name, arguments) = part.split_once(MISTRAL_ARGS)?;
            let name = name.trim();
            let arguments: Value = serde_json::from_str(arguments.trim()).ok()?;
            if !known(name) || !arguments.is_object() {
                return None;
            }
            calls.push(ParsedCall {
                name: name.to_string(),
                arguments,
            });
        }
    }
    Some(ParsedOutput { content, calls })
}

/// `<|python_tag|>{…}` or a bare `{"name": …, "parameters": …}`, several joined by `;`.
fn parse_llama(text: &str, known: &dyn Fn(&str) -> bool) -> Option<ParsedOutput> {
    let (content, body) = match text.find(LLAMA_PYTHON_TAG) {
        Some(start) => (
            text[..start].trim(),
            text[start + LLAMA_PYTHON_TAG.len()..].trim(),
        ),
        None => ("", text.trim()),
    };
    if !body.starts_with('{') || !body.contains("\"parameters\"") {
        return None;
    }
    // Whole first (a `;` may sit inside a string), then split.
    let calls = match serde_json::from_str::<Value>(body) {
        Ok(value) => vec![call_from_value(&value, known)?],
        Err(_) => body
            .split(';')
            .map(|part| call_from_value(&serde_json::from_str(part.trim()).ok()?, known))
            .collect::<Option<Vec<_>>>()?,
    };
    Some(ParsedOutput {
        content: content.to_string(),
        calls,
    })
}

/// The whole text one call object or an array of them, perhaps in a Markdown code fence.
fn parse_generic_json(text: &str, known: &dyn Fn(&str) -> bool) -> Option<ParsedOutput> {
    let body = strip_code_fence(text.trim());
    let value: Value = serde_json::from_str(body).ok()?;
    let calls = match &value {
        Value::Object(map) if map.get("tool_calls").is_some_and(Value::is_array) => {
            calls_from_value(&map["tool_calls"], known)?
        }
        Value::Array(_) => calls_from_value(&value, known)?,
        _ => vec![call_from_value(&value, known)?],
    };
    Some(ParsedOutput {
        content: String::new(),
        calls,
    })
}

fn strip_code_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

fn calls_from_value(value: &Value, known: &dyn Fn(&str) -> bool) -> Option<Vec<ParsedCall>> {
    value
        .as_array()?
        .iter()
        .map(|item| call_from_value(item, known))
        .collect()
}

/// `{"name", "arguments" | "parameters"}`, or OpenAI's `{"function": {…}}` shape; the name must
/// be a known tool and the arguments a JSON object (or a string holding one).
fn call_from_value(value: &Value, known: &dyn Fn(&str) -> bool) -> Option<ParsedCall> {
    let map: &Map<String, Value> = value.as_object()?;
    if let Some(function) = map.get("function").filter(|f| f.is_object()) {
        return call_from_value(function, known);
    }
    let name = map.get("name")?.as_str()?;
    if !known(name) {
        return None;
    }
    let arguments = match map.get("arguments").or_else(|| map.get("parameters")) {
        None => Value::Object(Map::new()),
        Some(Value::String(text)) => serde_json::from_str(text).ok()?,
        Some(value) => value.clone(),
    };
    arguments.is_object().then(|| ParsedCall {
        name: name.to_string(),
        arguments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<ToolDefinition> {
        ["get_weather", "add"]
            .into_iter()
            .map(|name| ToolDefinition {
                name: name.into(),
                description: None,
                parameters: json!({"type": "object"}),
            })
            .collect()
    }

    fn call(name: &str, arguments: Value) -> ParsedCall {
        ParsedCall {
            name: name.into(),
            arguments,
        }
    }

    #[test]
    fn hermes_calls_with_text_around_them() {
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 1}}</tool_call>";
        let parsed = parse_tool_calls(text, &tools());
        assert_eq!(parsed.content, "Let me look.");
        assert_eq!(
            parsed.calls,
            vec![
                call("get_weather", json!({"city": "Paris"})),
                call("add", json!({"a": 1}))
            ]
        );
        // An unclosed last call at the end of the text still counts.
        let parsed = parse_tool_calls(
            "<tool_call>{\"name\": \"add\", \"arguments\": {}}",
            &tools(),
        );
        assert_eq!(parsed.calls, vec![call("add", json!({}))]);
    }

    #[test]
    fn mistral_calls_both_formats() {
        let text = "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 2}}]";
        assert_eq!(
            parse_tool_calls(text, &tools()).calls,
            vec![call("add", json!({"a": 2}))]
        );
        let text = "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]add[ARGS]{}";
        assert_eq!(
            parse_tool_calls(text, &tools()).calls,
            vec![
                call("get_weather", json!({"city": "Oslo"})),
                call("add", json!({}))
            ]
        );
    }

    #[test]
    fn llama_calls_with_and_without_the_python_tag() {
        let text = "<|python_tag|>{\"name\": \"add\", \"parameters\": {\"a\": 3}}";
        assert_eq!(
            parse_tool_calls(text, &tools()).calls,
            vec![call("add", json!({"a": 3}))]
        );
        let text = "{\"name\": \"add\", \"parameters\": {\"a\": \"x;y\"}}";
        assert_eq!(
            parse_tool_calls(text, &tools()).calls,
            vec![call("add", json!({"a": "x;y"}))]
        );
        let text = "{\"name\": \"add\", \"parameters\": {}}; {\"name\": \"get_weather\", \"parameters\": {}}";
        assert_eq!(parse_tool_calls(text, &tools()).calls.len(), 2);
    }

    #[test]
    fn generic_json_in_any_key_order_fenced_or_as_an_array() {
        let text = "{\"arguments\": {\"city\": \"Rome\"}, \"name\": \"get_weather\"}";
        assert_eq!(
            parse_tool_calls(text, &tools()).calls,
            vec![call("get_weather", json!({"city": "Rome"}))]
        );
        let text = "```json\n[{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 1}\"}]\n```";
        assert_eq!(
            parse_tool_calls(text, &tools()).calls,
            vec![call("add", json!({"a": 1}))]
        );
        let text = "{\"tool_calls\": [{\"function\": {\"name\": \"add\", \"arguments\": {}}}]}";
        assert_eq!(
            parse_tool_calls(text, &tools()).calls,
            vec![call("add", json!({}))]
        );
    }

    #[test]
    fn what_is_not_a_valid_call_stays_content() {
        let cases = [
            "Just words.",
            // Unknown tool.
            "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>",
            // Arguments that do not parse, or are no object.
            "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": </tool_call>",
            "{\"name\": \"add\", \"arguments\": \"not json\"}",
            "{\"name\": \"add\", \"arguments\": [1, 2]}",
            // One bad call spoils its block.
            "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {}}, {\"name\": \"nope\"}]",
            "{\"city\": \"Paris\"}",
            "",
        ];
        for text in cases {
            let parsed = parse_tool_calls(text, &tools());
            assert!(parsed.calls.is_empty(), "{text}");
            assert_eq!(parsed.content, text);
        }
    }
}
