//! `POST /v1/chat/completions` bodies: the messages and the chat-only fields.

use hearth_protocol::{ChatMessage, OutputConstraint, Prompt, Role, MAX_TOP_LOGPROBS};
use serde_json::Value;

use super::fields::{as_object, type_name, Fields};
use super::reasoning::parse_reasoning_options;
use super::tools::{parse_history_tool_calls, parse_tool_set};
use super::{
    parse_common, parse_context_overflow, parse_max_tokens, parse_response_format,
    CompletionRequest, Endpoint,
};
use crate::error::ApiError;
use crate::tools::ToolSet;

/// Parses and validates a `POST /v1/chat/completions` body.
pub fn parse_chat_request(body: &Value) -> Result<CompletionRequest, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let common = parse_common(&fields)?;
    let messages = parse_messages(&fields)?;
    let max_tokens = parse_max_tokens(&fields, &["max_tokens", "max_completion_tokens"])?;
    fields.unsupported_unless_empty(
        "functions",
        "The deprecated 'functions' (use 'tools' instead)",
    )?;
    let tools = parse_tool_set(&fields)?;
    let logprobs = match fields.bool("logprobs")? {
        Some(true) => Some(
            fields
                .integer("top_logprobs", 0, i64::from(MAX_TOP_LOGPROBS))?
                .unwrap_or(0) as u32,
        ),
        _ => {
            if fields.get("top_logprobs").is_some() {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    "'top_logprobs' needs 'logprobs' set to true.",
                ));
            }
            None
        }
    };
    if tools.is_some() && logprobs.is_some() {
        return Err(ApiError::invalid_param(
            "logprobs",
            "'logprobs' cannot be combined with 'tools'.",
        )
        .with_code("unsupported_parameter"));
    }
    let mut constraint = parse_response_format(&fields)?;
    if let Some(schema) = tools.as_ref().and_then(ToolSet::forced_call_schema) {
        if constraint.is_some() {
            return Err(ApiError::invalid_param(
                "response_format",
                "'response_format' cannot be combined with a 'tool_choice' that forces a call.",
            ));
        }
        constraint = Some(OutputConstraint::JsonSchema { schema });
    }
    Ok(CompletionRequest {
        endpoint: Endpoint::ChatCompletions,
        model: common.model,
        prompt: Prompt::Chat { messages },
        sampling: common.sampling,
        max_tokens,
        stop: common.stop,
        stream: common.stream,
        include_usage: common.include_usage,
        constraint,
        logprobs,
        ignore_eos: common.ignore_eos,
        context_overflow: parse_context_overflow(&fields)?,
        echo: false,
        tools,
        reasoning: parse_reasoning_options(&fields)?,
    })
}

fn parse_messages(fields: &Fields<'_>) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match fields.get("messages") {
        None => {
            return Err(ApiError::invalid_param(
                "messages",
                "'messages' is required: an array of {role, content} objects.",
            )
            .with_code("missing_required_parameter"))
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(fields.wrong_type("messages", "an array", other)),
    };
    if items.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "'messages' must contain at least one message.",
        ));
    }
    hearth_protocol::check_message_count(items.len())
        .map_err(|message| ApiError::invalid_param("messages", message))?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_message(index, item))
        .collect()
}

fn parse_message(index: usize, item: &Value) -> Result<ChatMessage, ApiError> {
    let prefix = format!("messages[{index}]");
    let Some(map) = item.as_object() else {
        return Err(ApiError::invalid_param(
            prefix.clone(),
            format!("'{prefix}' must be an object, got {}.", type_name(item)),
        )
        .with_code("invalid_type"));
    };
    let fields = Fields::new(map, format!("{prefix}."));
    let role = match fields.string("role")? {
        None => {
            return Err(ApiError::invalid_param(
                fields.param("role"),
                format!("'{prefix}.role' is required."),
            )
            .with_code("missing_required_parameter"))
        }
        // `developer` is the newer name of `system`.
        Some("system") | Some("developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some("function") => {
            return Err(ApiError::invalid_param(
                fields.param("role"),
                "The deprecated \"function\" role is not supported: use \"tool\" messages.",
            )
            .with_code("unsupported_value"))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                fields.param("role"),
                format!(
                    "'{prefix}.role' must be \"system\", \"developer\", \"user\", \"assistant\" or \"tool\"."
                ),
            ))
        }
    };
    fields.string("name")?;
    // An assistant turn's thinking is read (so a wrong type is an error) but not replayed
    // into the prompt: chat templates drop old thinking, as the models were trained.
    fields.string("reasoning_content")?;
    let tool_calls = match role {
        Role::Assistant => parse_history_tool_calls(&fields)?,
        _ => Vec::new(),
    };
    let tool_call_id = match (role, fields.string("tool_call_id")?) {
        (Role::Tool, None) => {
            return Err(ApiError::invalid_param(
                fields.param("tool_call_id"),
                format!("'{prefix}.tool_call_id' is required in a tool message."),
            )
            .with_code("missing_required_parameter"))
        }
        (_, id) => id.map(str::to_string),
    };
    let content = match fields.get("content") {
        None if role == Role::Assistant => String::new(),
        None => {
            return Err(ApiError::invalid_param(
                fields.param("content"),
                format!("'{prefix}.content' is required."),
            )
            .with_code("missing_required_parameter"))
        }
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parse_content_parts(&prefix, parts)?,
        Some(other) => {
            return Err(fields.wrong_type("content", "a string or an array of text parts", other))
        }
    };
    Ok(ChatMessage {
        role,
        content,
        tool_calls,
        tool_call_id,
    })
}

/// Text parts are joined with newlines; other parts (images, audio, files) are refused.
fn parse_content_parts(prefix: &str, parts: &[Value]) -> Result<String, ApiError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let param = format!("{prefix}.content[{index}]");
        let Some(map) = part.as_object() else {
            return Err(ApiError::invalid_param(
                param.clone(),
                format!("'{param}' must be an object, got {}.", type_name(part)),
            )
            .with_code("invalid_type"));
        };
        let fields = Fields::new(map, format!("{param}."));
        match fields.string("type")? {
            Some("text") => match fields.string("text")? {
                Some(text) => texts.push(text),
                None => {
                    return Err(ApiError::invalid_param(
                        fields.param("text"),
                        format!("'{param}.text' is required."),
                    )
                    .with_code("missing_required_parameter"))
                }
            },
            Some("image_url") | Some("input_audio") | Some("file") => {
                return Err(ApiError::invalid_param(
                    fields.param("type"),
                    "Only text content is supported: this model takes no images, audio or files.",
                )
                .with_code("unsupported_value"))
            }
            _ => {
                return Err(ApiError::invalid_param(
                    fields.param("type"),
                    format!("'{param}.type' must be \"text\"."),
                ))
            }
        }
    }
    Ok(texts.join("\n"))
}
