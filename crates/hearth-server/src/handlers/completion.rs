//! `POST /v1/chat/completions` and `POST /v1/completions`, and the parts of an answer the
//! other APIs (Anthropic's, Ollama's, the conversations) share: the wait for the engine's
//! `Started` before any byte is sent, a whole answer collected, and tool calls read from it.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_protocol::{FinishReason, Prompt, RequestMetrics, ThinkingSyntax, TokenLogprob};
use hearth_supervisor::{GenerationEvent, GenerationStream, SupervisorError};

use super::streaming::{stream_answer, StreamingAnswer};
use super::JsonBody;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::models::{unix_now, ModelLease};
use crate::openai::{new_response_id, AnswerCall, AnswerContext, AnswerReasoning};
use crate::reasoning::ReasoningStream;
use crate::request::{parse_chat_request, parse_completion_request, CompletionRequest};
use crate::tools::{new_call_id, ParsedCall, ToolCallStream, ToolSet};
use crate::AppState;

pub async fn chat_completions(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = parse_chat_request(&body)?;
    complete(state, request).await
}

pub async fn completions(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = parse_completion_request(&body)?;
    complete(state, request).await
}

/// What the engine said when it admitted a generation.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub prompt_tokens: u32,
    pub dropped_messages: u32,
    /// The tags the output thinks in, when the model thinks in tags.
    pub thinking: Option<ThinkingSyntax>,
}

/// Waits for a generation's first event, which must be `Started`: anything else (an error,
/// another event, a worker that exited) becomes the API error for `param`, so it can still be
/// answered with a status before any byte of a stream is sent.
pub(crate) async fn wait_for_start(
    stream: &mut GenerationStream,
    param: &str,
) -> Result<Started, ApiError> {
    let error = match stream.next().await {
        Some(Ok(GenerationEvent::Started {
            prompt_tokens,
            dropped_messages,
            thinking,
            ..
        })) => {
            return Ok(Started {
                prompt_tokens,
                dropped_messages,
                thinking,
            })
        }
        Some(Err(error)) => error,
        Some(Ok(other)) => SupervisorError::Protocol(format!("{other:?} before Started")),
        None => SupervisorError::WorkerCrashed {
            status: "worker exited".into(),
        },
    };
    Err(ApiError::from_supervisor(error, param))
}

/// Runs one completion of either endpoint.
async fn complete(state: AppState, request: CompletionRequest) -> Result<Response, ApiError> {
    let prompt_param = request.endpoint.prompt_param();
    let lease = state.models.acquire(&request.model).await?;
    let mut stream = lease
        .generate(request.generation())
        .await
        .map_err(|error| ApiError::from_supervisor(error, prompt_param))?;
    // The first event decides the status: Started, or an error before any byte is sent.
    let started = wait_for_start(&mut stream, prompt_param).await?;
    let reasoning = ReasoningStream::new(started.thinking.as_ref(), request.reasoning.format);
    let context = AnswerContext {
        id: new_response_id(request.endpoint),
        created: unix_now(),
        model: lease.id().to_string(),
        endpoint: request.endpoint,
        include_usage: request.include_usage,
        logprobs: request.logprobs.is_some(),
    };
    let echo = match (&request.prompt, request.echo) {
        (Prompt::Text { text }, true) => Some(text.clone()),
        _ => None,
    };
    if request.stream {
        Ok(stream_answer(StreamingAnswer::new(
            stream,
            lease,
            context,
            state.metrics.clone(),
            echo,
            request.tools.map(ToolCallStream::new),
            reasoning,
        )))
    } else {
        let answer = collect_answer(
            stream,
            &lease,
            &state.metrics,
            echo,
            prompt_param,
            reasoning,
        )
        .await?;
        // The tool-call parser sees the answer's words only, never its thinking.
        let (text, calls) = split_calls(request.tools.as_ref(), answer.text);
        let body = context.full_answer(
            &text,
            &answer.reasoning,
            &calls,
            answer.finish_reason,
            &answer.logprobs,
            &answer.metrics,
        );
        Ok(Json(body).into_response())
    }
}

/// A whole answer's words and calls (all words without tools).
pub(crate) fn split_calls(tools: Option<&ToolSet>, text: String) -> (String, Vec<AnswerCall>) {
    match tools {
        Some(tools) => {
            let parsed = tools.parse(&text);
            (parsed.content, answer_calls(parsed.calls))
        }
        None => (text, Vec::new()),
    }
}

/// Calls read from an answer, with fresh ids and their arguments written as JSON.
pub(crate) fn answer_calls(calls: Vec<ParsedCall>) -> Vec<AnswerCall> {
    calls
        .into_iter()
        .map(|call| AnswerCall {
            id: new_call_id(),
            name: call.name,
            arguments: call.arguments.to_string(),
        })
        .collect()
}

/// A whole answer, collected.
pub(crate) struct CollectedAnswer {
    /// Its words, without the thinking.
    pub text: String,
    pub reasoning: AnswerReasoning,
    pub logprobs: Vec<TokenLogprob>,
    pub finish_reason: FinishReason,
    pub metrics: RequestMetrics,
    /// The stop string that ended the text, when one did.
    pub stop_sequence: Option<String>,
}

/// Collects an answer's text (after `echo`, when given) to its end, its thinking apart, and
/// records its figures.
pub(crate) async fn collect_answer(
    mut stream: GenerationStream,
    lease: &ModelLease,
    metrics: &Metrics,
    echo: Option<String>,
    prompt_param: &str,
    mut reasoning: ReasoningStream,
) -> Result<CollectedAnswer, ApiError> {
    let mut text = echo.unwrap_or_default();
    let mut thinking = String::new();
    let mut logprobs: Vec<TokenLogprob> = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(GenerationEvent::Text {
                text: piece,
                logprobs: piece_logprobs,
            })) => {
                let split = reasoning.push(&piece);
                thinking.push_str(&split.reasoning);
                text.push_str(&split.content);
                logprobs.extend(piece_logprobs);
            }
            Some(Ok(GenerationEvent::Started { .. })) => {}
            Some(Ok(GenerationEvent::Done {
                finish_reason,
                metrics: figures,
                stop_sequence,
            })) => {
                metrics.record_generation(lease.id(), finish_reason, &figures);
                let split = reasoning.finish();
                thinking.push_str(&split.reasoning);
                text.push_str(&split.content);
                return Ok(CollectedAnswer {
                    text,
                    reasoning: AnswerReasoning {
                        text: thinking,
                        tokens: reasoning.thinks().then(|| reasoning.tokens()),
                    },
                    logprobs,
                    finish_reason,
                    metrics: figures,
                    stop_sequence,
                });
            }
            Some(Err(error)) => return Err(ApiError::from_supervisor(error, prompt_param)),
            None => {
                return Err(ApiError::from_supervisor(
                    SupervisorError::WorkerCrashed {
                        status: "worker exited".into(),
                    },
                    prompt_param,
                ))
            }
        }
    }
}
