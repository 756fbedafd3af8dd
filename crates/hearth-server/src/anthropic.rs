//! Anthropic's Messages API: `POST /v1/messages`, whole or streamed, for tools that speak
//! only Anthropic's API (the official `anthropic` SDKs, agents built on them).
//!
//! A body is read into the same validated request as a chat completion
//! (`request::parse_messages_request`) and runs the same way: the first engine event decides
//! the status, tool calls are read by `tools`. The answer is a `message` of `text` and
//! `tool_use` blocks with Anthropic's `stop_reason` (`end_turn`, `max_tokens`,
//! `stop_sequence`, `tool_use`) and `usage`; a stream sends Anthropic's named events in its
//! order ([`stream`]). Every error on this route, also those of the security and body-limit
//! layers, leaves in Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`:
//! [`anthropic_error_shape`] rewrites the OpenAI error object the rest of the server answers
//! with, so no rule is written twice.

mod stream;
pub mod wire;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_protocol::FinishReason;

use crate::error::{reshape_error_response, ApiError};
use crate::handlers::{collect_answer, split_calls, wait_for_start, JsonBody};
use crate::openai::{new_id, AnswerCall};
use crate::reasoning::{ReasoningFormat, ReasoningStream};
use crate::request::parse_messages_request;
use crate::AppState;
use wire::{ContentBlock, ErrorBody, ErrorDetail, MessageObject, MessageUsage};

/// The route of Anthropic's Messages API.
pub const MESSAGES_PATH: &str = "/v1/messages";
/// The field named in errors about the prompt.
const PROMPT_PARAM: &str = "messages";

pub async fn messages(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = parse_messages_request(&body)?;
    let lease = state.models.acquire(&request.model).await?;
    let mut generation = lease
        .generate(request.generation())
        .await
        .map_err(|error| ApiError::from_supervisor(error, PROMPT_PARAM))?;
    let started = wait_for_start(&mut generation, PROMPT_PARAM).await?;
    let id = new_id("msg_");
    if request.stream {
        return Ok(stream::response(stream::MessageStream::new(
            generation,
            lease,
            state.metrics.clone(),
            id,
            started.prompt_tokens,
            request.tools,
        )));
    }
    // Thinking is off for this API (`request::anthropic`); should a model think anyway, its
    // thinking is kept out of the text.
    let reasoning = ReasoningStream::new(started.thinking.as_ref(), ReasoningFormat::Separate);
    let answer = collect_answer(
        generation,
        &lease,
        &state.metrics,
        None,
        PROMPT_PARAM,
        reasoning,
    )
    .await?;
    let (text, calls) = split_calls(request.tools.as_ref(), answer.text);
    let inputs = call_inputs(&calls);
    let mut message = MessageObject::new(
        &id,
        lease.id(),
        MessageUsage {
            input_tokens: answer.metrics.prompt_tokens,
            output_tokens: answer.metrics.generated_tokens,
        },
    );
    if !text.is_empty() || calls.is_empty() {
        message.content.push(ContentBlock::Text { text: &text });
    }
    message.content.extend(
        calls
            .iter()
            .zip(&inputs)
            .map(|(call, input)| ContentBlock::ToolUse {
                id: &call.id,
                name: &call.name,
                input,
            }),
    );
    message.stop_reason = Some(stop_reason(
        answer.finish_reason,
        answer.stop_sequence.is_some(),
        !calls.is_empty(),
    ));
    message.stop_sequence = answer.stop_sequence.as_deref();
    Ok(Json(message).into_response())
}

/// Each call's arguments as the `input` object (they were parsed from JSON, so they parse back).
pub(crate) fn call_inputs(calls: &[AnswerCall]) -> Vec<serde_json::Value> {
    calls
        .iter()
        .map(|call| serde_json::from_str(&call.arguments).unwrap_or_default())
        .collect()
}

/// Anthropic's `stop_reason` of an answer.
pub(crate) fn stop_reason(
    finish: FinishReason,
    by_stop_sequence: bool,
    calls: bool,
) -> &'static str {
    match finish {
        _ if calls => "tool_use",
        FinishReason::Length => "max_tokens",
        FinishReason::Stop if by_stop_sequence => "stop_sequence",
        FinishReason::Stop | FinishReason::Cancelled => "end_turn",
    }
}

/// Anthropic's error `type` for a status.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's error body for an API error (also what a stream sends after its 200).
pub(crate) fn error_body(status: StatusCode, message: String) -> ErrorBody {
    ErrorBody {
        kind: "error",
        error: ErrorDetail {
            kind: error_type(status),
            message,
        },
    }
}

/// Middleware: an error answer to [`MESSAGES_PATH`] (from a handler or any layer) leaves in
/// Anthropic's shape, with its status and headers (`Retry-After`) kept.
pub async fn anthropic_error_shape(request: Request, next: Next) -> Response {
    if request.uri().path() != MESSAGES_PATH {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    reshape_error_response(response, error_body).await
}

#[cfg(test)]
mod tests;
