//! `POST /v1/completions` bodies: the prompt (text or token ids) and the legacy fields.

use hearth_protocol::{ContextOverflow, Prompt};
use serde_json::Value;

use super::fields::{as_object, Fields};
use super::{
    parse_common, parse_max_tokens, parse_response_format, CompletionRequest, Endpoint,
    ReasoningOptions, DEFAULT_COMPLETION_MAX_TOKENS, MAX_COMPLETION_LOGPROBS,
};
use crate::error::ApiError;

/// Parses and validates a `POST /v1/completions` body.
pub fn parse_completion_request(body: &Value) -> Result<CompletionRequest, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let common = parse_common(&fields)?;
    let prompt = parse_prompt(&fields)?;
    let max_tokens =
        parse_max_tokens(&fields, &["max_tokens"])?.or(Some(DEFAULT_COMPLETION_MAX_TOKENS));
    let logprobs = fields
        .integer("logprobs", 0, MAX_COMPLETION_LOGPROBS as i64)?
        .map(|count| count as u32);
    let echo = fields.bool("echo")?.unwrap_or(false);
    if echo && matches!(prompt, Prompt::Tokens { .. }) {
        return Err(ApiError::invalid_param(
            "echo",
            "'echo' needs a text prompt, not token ids.",
        ));
    }
    fields.unsupported_unless_empty("suffix", "'suffix' (fill-in-the-middle)")?;
    if fields
        .integer("best_of", 1, i64::MAX)?
        .is_some_and(|best_of| best_of != 1)
    {
        return Err(
            ApiError::invalid_param("best_of", "Only best_of=1 is supported.")
                .with_code("unsupported_value"),
        );
    }
    Ok(CompletionRequest {
        endpoint: Endpoint::Completions,
        model: common.model,
        prompt,
        sampling: common.sampling,
        max_tokens,
        stop: common.stop,
        stream: common.stream,
        include_usage: common.include_usage,
        constraint: parse_response_format(&fields)?,
        logprobs,
        ignore_eos: common.ignore_eos,
        context_overflow: ContextOverflow::Error,
        echo,
        tools: None,
        reasoning: ReasoningOptions::default(),
    })
}

/// A prompt is a string, an array with one string, or token ids (an array of integers, or an
/// array with one such array). Several prompts in one request are refused (like n > 1).
fn parse_prompt(fields: &Fields<'_>) -> Result<Prompt, ApiError> {
    let several = || {
        ApiError::invalid_param(
            "prompt",
            "Only one prompt per request is supported: send several requests.",
        )
        .with_code("unsupported_value")
    };
    let prompt = match fields.get("prompt") {
        None => {
            return Err(ApiError::invalid_param("prompt", "'prompt' is required.")
                .with_code("missing_required_parameter"))
        }
        Some(Value::String(text)) => Prompt::Text { text: text.clone() },
        Some(Value::Array(items)) => match items.as_slice() {
            [] => {
                return Err(ApiError::invalid_param(
                    "prompt",
                    "'prompt' must not be empty.",
                ))
            }
            [Value::String(text)] => Prompt::Text { text: text.clone() },
            [Value::Array(tokens)] => Prompt::Tokens {
                tokens: parse_tokens(tokens, "prompt[0]")?,
            },
            items if items.iter().all(Value::is_number) => Prompt::Tokens {
                tokens: parse_tokens(items, "prompt")?,
            },
            items if items.iter().all(|i| i.is_string() || i.is_array()) => return Err(several()),
            _ => {
                return Err(fields.wrong_type(
                    "prompt",
                    "a string, an array of strings or an array of token ids",
                    &Value::Array(items.clone()),
                ))
            }
        },
        Some(other) => return Err(fields.wrong_type("prompt", "a string", other)),
    };
    let empty = match &prompt {
        Prompt::Text { text } => text.is_empty(),
        Prompt::Tokens { tokens } => tokens.is_empty(),
        Prompt::Chat { messages } => messages.is_empty(),
    };
    if empty {
        return Err(ApiError::invalid_param(
            "prompt",
            "'prompt' must not be empty.",
        ));
    }
    Ok(prompt)
}

fn parse_tokens(items: &[Value], param: &str) -> Result<Vec<i32>, ApiError> {
    items
        .iter()
        .map(|item| {
            item.as_i64()
                .and_then(|token| i32::try_from(token).ok())
                .filter(|token| *token >= 0)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        param,
                        format!(
                            "'{param}' token ids must be integers from 0 to {}.",
                            i32::MAX
                        ),
                    )
                })
        })
        .collect()
}
