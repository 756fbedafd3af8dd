//! Tool calling, what both APIs share (OpenAI's `tools`, Anthropic's `tool_use`): the tools a
//! request offers and how it lets the model use them, the grammar that forces a call, and
//! reading calls back out of the model's text.
//!
//! The model sees the tools through its chat template (`hearth_engine::tool_prompt`). With
//! `tool_choice: auto` it may answer in words or call; its text is read by [`parse`]'s
//! parsers (Hermes/Qwen `<tool_call>`, Llama 3.x JSON, Mistral `[TOOL_CALLS]`, a generic JSON
//! fallback). With `required` or a named function the output is constrained by a JSON schema
//! built from the tools' own schemas ([`ToolSet::forced_call_schema`]), converted to a grammar
//! by the engine's constraint path like any `response_format`, so even a small model returns
//! a call whose arguments match. Arguments that do not parse as JSON are never a call: such
//! text stays the answer's content.

pub mod parse;
pub mod stream;

use hearth_protocol::ToolDefinition;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

pub use parse::{parse_tool_calls, ParsedCall, ParsedOutput};
pub use stream::ToolCallStream;

/// Most tools per request (OpenAI's limit). Every tool's signature is in the prompt, and a
/// forced call's grammar chooses among them all.
pub const MAX_TOOLS: usize = 128;
/// Longest tool name (OpenAI's limit); names are `a-z`, `A-Z`, `0-9`, `_` and `-`.
pub const MAX_TOOL_NAME_BYTES: usize = 64;

/// How the model may use the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// It decides: words or calls.
    Auto,
    /// It must call one of the tools.
    Required,
    /// It must call this one.
    Named(String),
}

/// The tools of one request and how they may be used (`tool_choice: none` offers none).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSet {
    pub tools: Vec<ToolDefinition>,
    pub choice: ToolChoice,
    /// `parallel_tool_calls`: more than one call per answer (OpenAI's default: true).
    pub parallel: bool,
}

impl ToolSet {
    /// Whether the output is constrained to a call.
    pub fn is_forced(&self) -> bool {
        self.choice != ToolChoice::Auto
    }

    /// The JSON schema a forced answer must match: `{"name": <a tool's name>, "arguments":
    /// <its parameters>}`, one branch per allowed tool. `None` with `tool_choice: auto`.
    pub fn forced_call_schema(&self) -> Option<Value> {
        let branch = |tool: &ToolDefinition| {
            serde_json::to_value(CallSchema {
                additional_properties: false,
                properties: CallProperties {
                    arguments: &tool.parameters,
                    name: ConstSchema {
                        constant: &tool.name,
                    },
                },
                required: ["name", "arguments"],
                kind: "object",
            })
            .unwrap_or(Value::Null)
        };
        match &self.choice {
            ToolChoice::Auto => None,
            ToolChoice::Named(name) => self.tools.iter().find(|t| &t.name == name).map(branch),
            ToolChoice::Required if self.tools.len() == 1 => Some(branch(&self.tools[0])),
            ToolChoice::Required => {
                let mut any_of = Map::new();
                any_of.insert(
                    "anyOf".into(),
                    Value::Array(self.tools.iter().map(branch).collect()),
                );
                Some(Value::Object(any_of))
            }
        }
    }

    /// A request's tool set. Each tool's schema is within bounds (checked as it is read);
    /// together, for a forced call, they must be too.
    pub fn checked(
        tools: Vec<ToolDefinition>,
        choice: ToolChoice,
        parallel: bool,
    ) -> Result<Self, ApiError> {
        let set = Self {
            tools,
            choice,
            parallel,
        };
        if let Some(schema) = set.forced_call_schema() {
            hearth_protocol::check_json_schema(&schema).map_err(|error| {
                ApiError::invalid_param(
                    "tools",
                    format!("The tools are too large to force a call with 'tool_choice': {error}."),
                )
            })?;
        }
        Ok(set)
    }

    /// Calls read from an answer's text, as many as `parallel_tool_calls` allows.
    pub fn parse(&self, text: &str) -> ParsedOutput {
        let mut parsed = parse_tool_calls(text, &self.tools);
        if !self.parallel {
            parsed.calls.truncate(1);
        }
        parsed
    }
}

/// The schema of one forced call (fields in the order the schema is written).
#[derive(Serialize)]
struct CallSchema<'a> {
    #[serde(rename = "additionalProperties")]
    additional_properties: bool,
    properties: CallProperties<'a>,
    required: [&'static str; 2],
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct CallProperties<'a> {
    arguments: &'a Value,
    name: ConstSchema<'a>,
}

#[derive(Serialize)]
struct ConstSchema<'a> {
    #[serde(rename = "const")]
    constant: &'a str,
}

/// At most [`MAX_TOOLS`] tools.
pub fn check_tool_count(count: usize) -> Result<(), ApiError> {
    if count > MAX_TOOLS {
        return Err(ApiError::invalid_param(
            "tools",
            format!("'tools' may hold at most {MAX_TOOLS} tools, got {count}."),
        ));
    }
    Ok(())
}

/// The parameters of a tool declared without any: an object schema with no properties.
pub fn no_parameters() -> Value {
    let mut schema = Map::new();
    schema.insert("type".into(), Value::String("object".into()));
    schema.insert("properties".into(), Value::Object(Map::new()));
    Value::Object(schema)
}

/// Whether a tool name is what OpenAI accepts: 1 to 64 of `a-z A-Z 0-9 _ -`.
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A fresh tool call id (`call_` and 24 hex digits, as OpenAI's look).
pub fn new_call_id() -> String {
    let id = crate::openai::new_id("call_");
    id.chars().take("call_".len() + 24).collect()
}

#[cfg(test)]
mod tests;
