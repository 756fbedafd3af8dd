//! `POST /v1/messages` bodies (Anthropic's Messages API), read into the same validated
//! request as a chat completion: `system` (a string or text blocks) becomes the system
//! message, text blocks the messages' text, `tool_use` blocks an assistant's tool calls and
//! `tool_result` blocks `tool` messages; `tools` (with `input_schema`) and `tool_choice`
//! (`auto`, `any`, `tool`, `none`) map onto the tool calling of chat completions.
//! `max_tokens` is required, as Anthropic requires it. Errors name the field in `param`
//! (which the Anthropic error shape drops, so the message names it too).

use hearth_protocol::{
    ChatMessage, ContextOverflow, OutputConstraint, Prompt, Role, SamplingParams, ToolCall,
    ToolDefinition,
};
use serde_json::{Map, Value};

use super::fields::{as_object, item_fields, Fields};
use super::{parse_max_tokens, CompletionRequest, Endpoint, ReasoningOptions};
use crate::error::ApiError;
use crate::tools::{check_tool_count, is_valid_tool_name, ToolChoice, ToolSet};

/// Anthropic's range for `temperature`.
const ANTHROPIC_TEMPERATURE_RANGE: (f64, f64) = (0.0, 1.0);

/// Parses and validates a `POST /v1/messages` body.
pub fn parse_messages_request(body: &Value) -> Result<CompletionRequest, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let model = match fields.string("model")? {
        None => return Err(required(&fields, "model")),
        Some(model) => {
            super::check_model_name(model)?;
            model.to_string()
        }
    };
    let Some(max_tokens) = parse_max_tokens(&fields, &["max_tokens"])? else {
        return Err(required(&fields, "max_tokens"));
    };
    let mut messages = parse_system(&fields)?;
    messages.extend(parse_messages(&fields)?);
    let sampling = parse_sampling(&fields)?;
    let stop = parse_stop_sequences(&fields)?;
    let stream = fields.bool("stream")?.unwrap_or(false);
    let tools = parse_tools(&fields)?;
    let constraint = tools
        .as_ref()
        .and_then(ToolSet::forced_call_schema)
        .map(|schema| OutputConstraint::JsonSchema { schema });
    Ok(CompletionRequest {
        endpoint: Endpoint::ChatCompletions,
        model,
        prompt: Prompt::Chat { messages },
        sampling,
        max_tokens: Some(max_tokens),
        stop,
        stream,
        include_usage: false,
        constraint,
        logprobs: None,
        ignore_eos: false,
        context_overflow: ContextOverflow::Error,
        echo: false,
        tools,
        reasoning: ReasoningOptions {
            // Anthropic's API thinks only when asked (`thinking`), which Hearth does not
            // offer: a thinking model answers directly.
            enable_thinking: false,
            ..ReasoningOptions::default()
        },
    })
}

fn required(fields: &Fields<'_>, name: &str) -> ApiError {
    let param = fields.param(name);
    ApiError::invalid_param(param.clone(), format!("'{param}' is required."))
        .with_code("missing_required_parameter")
}

fn parse_sampling(fields: &Fields<'_>) -> Result<SamplingParams, ApiError> {
    let mut sampling = SamplingParams::default();
    if let Some(temperature) = fields.number("temperature", ANTHROPIC_TEMPERATURE_RANGE)? {
        sampling.temperature = temperature as f32;
    }
    if let Some(top_p) = fields.number("top_p", (0.0, 1.0))? {
        sampling.top_p = top_p as f32;
    }
    if let Some(top_k) = fields.integer("top_k", 0, i64::from(i32::MAX))? {
        sampling.top_k = top_k as i32;
    }
    Ok(sampling)
}

fn parse_stop_sequences(fields: &Fields<'_>) -> Result<Vec<String>, ApiError> {
    let items = match fields.get("stop_sequences") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(fields.wrong_type("stop_sequences", "an array of strings", other))
        }
    };
    if items.len() > super::MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid_param(
            "stop_sequences",
            format!(
                "'stop_sequences' may hold at most {} sequences, got {}.",
                super::MAX_STOP_SEQUENCES,
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(stop)
                if !stop.is_empty() && stop.len() <= super::MAX_STOP_SEQUENCE_BYTES =>
            {
                Ok(stop.clone())
            }
            _ => Err(ApiError::invalid_param(
                format!("stop_sequences[{index}]"),
                format!(
                    "'stop_sequences[{index}]' must be a string of 1 to {} bytes.",
                    super::MAX_STOP_SEQUENCE_BYTES
                ),
            )),
        })
        .collect()
}

/// `system`: a string, or an array of text blocks.
fn parse_system(fields: &Fields<'_>) -> Result<Vec<ChatMessage>, ApiError> {
    let text = match fields.get("system") {
        None => return Ok(Vec::new()),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (index, block) in blocks.iter().enumerate() {
                let block = Block::new(&format!("system[{index}]"), block)?;
                match block.kind()? {
                    "text" => texts.push(block.text()?),
                    _ => return Err(block.unsupported("'system' blocks must be text blocks.")),
                }
            }
            texts.join("\n")
        }
        Some(other) => {
            return Err(fields.wrong_type("system", "a string or an array of text blocks", other))
        }
    };
    Ok(vec![ChatMessage::new(Role::System, text)])
}

fn parse_messages(fields: &Fields<'_>) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match fields.get("messages") {
        None => return Err(required(fields, "messages")),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(ApiError::invalid_param(
                "messages",
                "'messages' must contain at least one message.",
            ))
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(fields.wrong_type("messages", "an array", other)),
    };
    hearth_protocol::check_message_count(items.len())
        .map_err(|message| ApiError::invalid_param("messages", message))?;
    let mut messages = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let prefix = format!("messages[{index}]");
        let message = item_fields(&prefix, item)?;
        let role = match message.string("role")? {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            None => return Err(required(&message, "role")),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    message.param("role"),
                    format!("'{prefix}.role' must be \"user\" or \"assistant\"."),
                ))
            }
        };
        match message.get("content") {
            None => return Err(required(&message, "content")),
            Some(Value::String(text)) => messages.push(ChatMessage::new(role, text.clone())),
            Some(Value::Array(blocks)) => {
                messages.extend(parse_blocks(&message.param("content"), role, blocks)?)
            }
            Some(other) => {
                return Err(message.wrong_type("content", "a string or an array of blocks", other))
            }
        }
    }
    Ok(messages)
}

/// A message's content blocks: a user's `tool_result`s become `tool` messages (before its
/// text), an assistant's `tool_use`s its tool calls; `thinking` blocks are not replayed.
fn parse_blocks(param: &str, role: Role, blocks: &[Value]) -> Result<Vec<ChatMessage>, ApiError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let block = Block::new(&format!("{param}[{index}]"), block)?;
        match (role, block.kind()?) {
            (_, "text") => texts.push(block.text()?),
            (Role::Assistant, "tool_use") => calls.push(block.tool_use()?),
            (Role::Assistant, "thinking" | "redacted_thinking") => {}
            (Role::User, "tool_result") => results.push(block.tool_result()?),
            (_, "image" | "document") => {
                return Err(block.unsupported(
                    "Only text content is supported: this model takes no images or documents.",
                ))
            }
            (_, kind) => {
                let message = format!("A {} message cannot hold a '{kind}' block.", role.as_str());
                return Err(block.unsupported(&message));
            }
        }
    }
    let mut messages = results;
    let text = texts.join("\n");
    if !text.is_empty() || !calls.is_empty() || messages.is_empty() {
        messages.push(ChatMessage {
            tool_calls: calls,
            ..ChatMessage::new(role, text)
        });
    }
    Ok(messages)
}

/// One content block, read with errors that name it.
struct Block<'a> {
    fields: Fields<'a>,
    param: String,
}

impl<'a> Block<'a> {
    fn new(param: &str, value: &'a Value) -> Result<Self, ApiError> {
        Ok(Self {
            fields: item_fields(param, value)?,
            param: param.to_string(),
        })
    }

    fn kind(&self) -> Result<&'a str, ApiError> {
        self.fields
            .string("type")?
            .ok_or_else(|| required(&self.fields, "type"))
    }

    fn text(&self) -> Result<String, ApiError> {
        match self.fields.string("text")? {
            Some(text) => Ok(text.to_string()),
            None => Err(required(&self.fields, "text")),
        }
    }

    fn unsupported(&self, message: &str) -> ApiError {
        ApiError::invalid_param(self.fields.param("type"), message.to_string())
            .with_code("unsupported_value")
    }

    fn tool_use(&self) -> Result<ToolCall, ApiError> {
        let id = self.fields.string("id")?.unwrap_or_default().to_string();
        let Some(name) = self.fields.string("name")? else {
            return Err(required(&self.fields, "name"));
        };
        let arguments = match self.fields.object("input")? {
            Some(input) => Value::Object(input.clone()),
            None => return Err(required(&self.fields, "input")),
        };
        Ok(ToolCall {
            id,
            name: name.to_string(),
            arguments,
        })
    }

    /// A `tool_result`: its text (a string or text blocks), marked when `is_error`.
    fn tool_result(&self) -> Result<ChatMessage, ApiError> {
        let Some(id) = self.fields.string("tool_use_id")? else {
            return Err(required(&self.fields, "tool_use_id"));
        };
        let mut text = match self.fields.get("content") {
            None => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(blocks)) => {
                let mut texts = Vec::with_capacity(blocks.len());
                for (index, block) in blocks.iter().enumerate() {
                    let block = Block::new(&format!("{}.content[{index}]", self.param), block)?;
                    match block.kind()? {
                        "text" => texts.push(block.text()?),
                        _ => return Err(block.unsupported("Tool results must be text.")),
                    }
                }
                texts.join("\n")
            }
            Some(other) => {
                return Err(self
                    .fields
                    .wrong_type("content", "a string or text blocks", other))
            }
        };
        if self.fields.bool("is_error")? == Some(true) {
            text = format!("Error: {text}");
        }
        Ok(ChatMessage {
            tool_call_id: Some(id.to_string()),
            ..ChatMessage::new(Role::Tool, text)
        })
    }
}

/// `tools` (`{name, description, input_schema}`) and `tool_choice`.
fn parse_tools(fields: &Fields<'_>) -> Result<Option<ToolSet>, ApiError> {
    let items: &[Value] = match fields.get("tools") {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(other) => return Err(fields.wrong_type("tools", "an array of tools", other)),
    };
    check_tool_count(items.len())?;
    let mut tools: Vec<ToolDefinition> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let tool = Block::new(&format!("tools[{index}]"), item)?;
        if let Some(kind) = tool.fields.string("type")?.filter(|kind| *kind != "custom") {
            return Err(tool.unsupported(&format!(
                "The server tool '{kind}' is not available: only custom tools are."
            )));
        }
        let name = match tool.fields.string("name")? {
            None => return Err(required(&tool.fields, "name")),
            Some(name) if !is_valid_tool_name(name) || tools.iter().any(|t| t.name == name) => {
                return Err(ApiError::invalid_param(
                    tool.fields.param("name"),
                    format!(
                        "'{}' must be a unique name of 1 to 64 letters, digits, '_' or '-'.",
                        tool.fields.param("name")
                    ),
                ))
            }
            Some(name) => name.to_string(),
        };
        let parameters = match tool.fields.get("input_schema") {
            None => return Err(required(&tool.fields, "input_schema")),
            Some(schema @ Value::Object(_)) => {
                let param = tool.fields.param("input_schema");
                hearth_protocol::check_json_schema(schema).map_err(|error| {
                    ApiError::invalid_param(
                        param.clone(),
                        format!("'{param}' is refused: {error}."),
                    )
                })?;
                schema.clone()
            }
            Some(other) => {
                return Err(tool
                    .fields
                    .wrong_type("input_schema", "a JSON schema object", other))
            }
        };
        tools.push(ToolDefinition {
            name,
            description: tool.fields.string("description")?.map(str::to_string),
            parameters,
        });
    }
    let empty = Map::new();
    let choice_map = fields.object("tool_choice")?.unwrap_or(&empty);
    let choice_fields = Fields::new(choice_map, "tool_choice.");
    let parallel = !choice_fields
        .bool("disable_parallel_tool_use")?
        .unwrap_or(false);
    let choice = match choice_fields.string("type")? {
        None | Some("auto") => ToolChoice::Auto,
        Some("none") => return Ok(None),
        Some("any") => ToolChoice::Required,
        Some("tool") => match choice_fields.string("name")? {
            Some(name) if tools.iter().any(|tool| tool.name == name) => {
                ToolChoice::Named(name.to_string())
            }
            _ => {
                return Err(ApiError::invalid_param(
                    "tool_choice.name",
                    "'tool_choice.name' must name one of the 'tools'.",
                ))
            }
        },
        Some(_) => {
            return Err(ApiError::invalid_param(
                "tool_choice.type",
                "'tool_choice.type' must be \"auto\", \"any\", \"tool\" or \"none\".",
            ))
        }
    };
    if tools.is_empty() {
        return match choice {
            ToolChoice::Auto => Ok(None),
            _ => Err(ApiError::invalid_param(
                "tool_choice",
                "'tool_choice' needs at least one tool in 'tools'.",
            )),
        };
    }
    ToolSet::checked(tools, choice, parallel).map(Some)
}
