//! The route handlers: completions (whole or streamed), models, health and metrics.
//!
//! A completion waits for the engine's first event before it answers: `Started` (the prompt
//! fits and has a slot) or an error. So `context_length_exceeded`, a full queue or an invalid
//! schema are plain HTTP errors sent before any SSE byte. After the 200, a failure is an
//! `{"error": ...}` event and the stream ends. Dropping the response body (the client went
//! away) drops the `GenerationStream`, which cancels the generation in the engine within one
//! step; a client that leaves while its request is queued drops the handler itself, with the
//! same effect.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_protocol::{
    FinishReason, Prompt, RequestMetrics, SplitText, ThinkingSyntax, TokenLogprob,
};
use hearth_supervisor::{GenerationEvent, GenerationStream, SupervisorError};
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, ErrorObject, LOADING_RETRY_AFTER_SECS};
use crate::metrics::{Metrics, SchedulerGauges};
use crate::models::{unix_now, ModelLease, ModelState};
use crate::openai::{
    finish_reason_str, model_object, new_response_id, remote_model_object, AnswerCall,
    AnswerContext, AnswerReasoning, ModelObject, TOOL_CALLS_FINISH_REASON,
};
use crate::reasoning::ReasoningStream;
use crate::request::{parse_chat_request, parse_completion_request, CompletionRequest, Endpoint};
use crate::tools::{new_call_id, ParsedCall, ToolCallStream, ToolSet};
use crate::wire::List;
use crate::{sse, AppState, MAX_REQUEST_BODY_BYTES};

/// How long `/metrics` waits for a model's scheduler figures. The engine answers between two
/// steps, and one step of prefill on a CPU can take seconds; this stays under Prometheus'
/// default scrape timeout (10 s).
const STATS_TIMEOUT: Duration = Duration::from_secs(8);

/// A request body parsed as JSON, within the size limit, with OpenAI errors for everything
/// that can go wrong (too large: 413; empty, not UTF-8, not JSON: 400).
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(request, state, None).await.map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body is `{}` (for requests whose fields are all optional).
#[derive(Debug)]
pub struct OptionalJsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(request, state, Some(Value::Object(serde_json::Map::new())))
            .await
            .map(OptionalJsonBody)
    }
}

/// Reads a JSON body within the size limit; an empty one is `if_empty`, or a 400 without it.
async fn read_json<S: Send + Sync>(
    request: Request,
    state: &S,
    if_empty: Option<Value>,
) -> Result<Value, ApiError> {
    // Refuse a declared oversize body before reading a byte of it.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_REQUEST_BODY_BYTES as u64) {
        return Err(ApiError::payload_too_large(MAX_REQUEST_BODY_BYTES));
    }
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(MAX_REQUEST_BODY_BYTES)
            } else {
                ApiError::bad_request("invalid_body", "The request body could not be read.")
            }
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if_empty.ok_or_else(|| {
            ApiError::bad_request(
                "invalid_json",
                "The request body is empty; expected a JSON object.",
            )
        });
    }
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::bad_request(
            "invalid_json",
            format!("We could not parse the JSON body of your request: {error}."),
        )
    })
}

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

/// Runs one completion of either endpoint.
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
        Ok(stream_answer(StreamingAnswer {
            stream,
            lease,
            context,
            metrics: state.metrics.clone(),
            phase: Phase::Opening { echo },
            text_offset: 0,
            tools: request.tools.map(ToolCallStream::new),
            reasoning,
        }))
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

#[derive(Debug)]
enum Phase {
    /// Nothing sent yet: the role chunk (chat) or the echoed prompt (completions) comes first.
    Opening {
        echo: Option<String>,
    },
    Streaming,
    Finished,
}

/// One streamed answer: the engine's events turned into SSE chunks.
#[derive(Debug)]
struct StreamingAnswer {
    stream: GenerationStream,
    lease: ModelLease,
    context: AnswerContext,
    metrics: Arc<Metrics>,
    phase: Phase,
    /// Bytes of text sent so far (for the legacy `text_offset`).
    text_offset: usize,
    /// With tools: the text that may be a call, held back until the end.
    tools: Option<ToolCallStream>,
    /// The thinking, split from the words (which alone reach `tools`).
    reasoning: ReasoningStream,
}

impl StreamingAnswer {
    /// The next bytes of the stream, or `None` at its end.
    async fn next_bytes(&mut self) -> Option<Bytes> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Streaming) {
                Phase::Finished => {
                    self.phase = Phase::Finished;
                    return None;
                }
                Phase::Opening { echo } => {
                    let frame = match (self.context.endpoint, echo) {
                        (Endpoint::ChatCompletions, _) => sse::frame(&self.context.role_chunk()),
                        (Endpoint::Completions, Some(prompt)) => {
                            self.text_offset = prompt.len();
                            sse::frame(&self.context.text_chunk(&prompt, &[], 0))
                        }
                        (Endpoint::Completions, None) => continue,
                    };
                    return Some(Bytes::from(frame));
                }
                Phase::Streaming => {}
            }
            match self.stream.next().await {
                Some(Ok(GenerationEvent::Text { text, logprobs })) => {
                    let split = self.reasoning.push(&text);
                    let frames = self.split_frames(&split, &logprobs);
                    if frames.is_empty() {
                        continue;
                    }
                    return Some(Bytes::from(frames));
                }
                Some(Ok(GenerationEvent::Started { .. })) => continue,
                Some(Ok(GenerationEvent::Done {
                    finish_reason,
                    metrics,
                    ..
                })) => {
                    self.phase = Phase::Finished;
                    return Some(Bytes::from(self.closing(finish_reason, &metrics)));
                }
                Some(Err(error)) => {
                    self.phase = Phase::Finished;
                    return Some(self.error_event(error));
                }
                None => {
                    self.phase = Phase::Finished;
                    return Some(self.error_event(SupervisorError::WorkerCrashed {
                        status: "worker exited".into(),
                    }));
                }
            }
        }
    }

    /// The frames of one split piece: its thinking, then its words (held back with tools
    /// while they may be a call). Its log-probabilities go with the first frame sent.
    fn split_frames(&mut self, split: &SplitText, logprobs: &[TokenLogprob]) -> String {
        let mut frames = String::new();
        let mut logprobs = logprobs;
        if !split.reasoning.is_empty() {
            let chunk = self.context.reasoning_chunk(&split.reasoning, logprobs);
            frames.push_str(&sse::frame(&chunk));
            logprobs = &[];
        }
        if let Some(tools) = &mut self.tools {
            let sent = tools.push(&split.content);
            if !sent.is_empty() {
                frames.push_str(&sse::frame(&self.context.text_chunk(&sent, &[], 0)));
            }
            return frames;
        }
        if split.content.is_empty() && logprobs.is_empty() {
            return frames;
        }
        let chunk = self
            .context
            .text_chunk(&split.content, logprobs, self.text_offset);
        self.text_offset += split.content.len();
        frames.push_str(&sse::frame(&chunk));
        frames
    }

    /// What the splitter held, the held text and calls (with tools), the finish chunk, the
    /// usage chunk when asked for, and `[DONE]`.
    fn closing(&mut self, finish_reason: FinishReason, metrics: &RequestMetrics) -> String {
        self.metrics
            .record_generation(self.lease.id(), finish_reason, metrics);
        let held = self.reasoning.finish();
        let mut out = self.split_frames(&held, &[]);
        let mut finish = finish_reason_str(finish_reason);
        if let Some(tools) = self.tools.take() {
            let end = tools.finish();
            if !end.content.is_empty() {
                out.push_str(&sse::frame(&self.context.text_chunk(&end.content, &[], 0)));
            }
            let calls = answer_calls(end.calls);
            for (index, call) in (0u32..).zip(&calls) {
                for chunk in self.context.tool_call_chunks(index, call) {
                    out.push_str(&sse::frame(&chunk));
                }
            }
            if !calls.is_empty() {
                finish = TOOL_CALLS_FINISH_REASON;
            }
        }
        out.push_str(&sse::frame(&self.context.finish_chunk(finish, metrics)));
        if self.context.include_usage {
            let reasoning_tokens = self.reasoning.thinks().then(|| self.reasoning.tokens());
            out.push_str(&sse::frame(
                &self.context.usage_chunk(metrics, reasoning_tokens),
            ));
        }
        out.push_str(sse::DONE);
        out
    }

    /// A failure after the 200: an error event, then the end (no `[DONE]`).
    fn error_event(&self, error: SupervisorError) -> Bytes {
        self.metrics.record_stream_error();
        let api = ApiError::from_supervisor(error, self.context.endpoint.prompt_param());
        Bytes::from(sse::frame(&api.body()))
    }
}

impl Drop for StreamingAnswer {
    fn drop(&mut self) {
        if !matches!(self.phase, Phase::Finished) {
            // The body was dropped before its end: the client went away. Dropping
            // `self.stream` (next) cancels the generation in the engine.
            self.metrics.record_client_disconnect(self.lease.id());
        }
    }
}

fn stream_answer(answer: StreamingAnswer) -> Response {
    sse::response(futures_util::stream::unfold(
        answer,
        |mut answer| async move {
            let bytes = answer.next_bytes().await?;
            Some((bytes, answer))
        },
    ))
}

/// Every model served: the local ones, then each remote provider's (`PROVIDER/MODEL`, with
/// `provider` set) that its provider listed.
async fn served_models(state: &AppState) -> Vec<ModelObject> {
    let mut models: Vec<ModelObject> = state
        .models
        .list()
        .iter()
        .map(|model| model_object(&model.id, model.created))
        .collect();
    if let Some(providers) = state.models.providers() {
        models.extend(
            providers
                .remote_models()
                .await
                .into_iter()
                .map(|model| remote_model_object(&model.id, model.created, &model.provider)),
        );
    }
    models
}

pub async fn list_models(State(state): State<AppState>) -> Json<List<ModelObject>> {
    Json(List::new(served_models(&state).await))
}

pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, ApiError> {
    served_models(&state)
        .await
        .into_iter()
        .find(|model| model.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::model_not_found(&id))
}

/// `GET /health` when no model is loading: `{"models": [...], "status": "ok"}`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// The models loaded or loading; left out without a key (the rest of the machine need
    /// not learn which models are here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<HealthModel>>,
    pub status: &'static str,
}

/// `GET /health` while a model loads (503): OpenAI's error object, and what `Health` says.
#[derive(Debug, Serialize)]
pub struct HealthLoading {
    pub error: ErrorObject,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<HealthModel>>,
    pub status: &'static str,
}

#[derive(Debug, Serialize)]
pub struct HealthModel {
    pub id: String,
    /// `loading` or `loaded`.
    pub state: &'static str,
}

/// 200 when ready (a model can be served or loaded on demand), 503 with `Retry-After` while a
/// model is loading.
pub async fn health(State(state): State<AppState>, headers: HeaderMap) -> Response {
    // Without a key, only ready or loading: no model ids.
    let models: Option<Vec<HealthModel>> =
        state.security.key_accepted(&headers).is_ok().then(|| {
            state
                .models
                .list()
                .into_iter()
                .filter(|model| model.state != ModelState::Available)
                .map(|model| HealthModel {
                    id: model.id,
                    state: model.state.as_str(),
                })
                .collect()
        });
    if state.models.loading_count() > 0 {
        let error = ApiError::unavailable(
            "model_loading",
            "A model is loading.",
            LOADING_RETRY_AFTER_SECS,
        );
        let body = HealthLoading {
            error: error.object(),
            models,
            status: "loading",
        };
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(LOADING_RETRY_AFTER_SECS),
        );
        return response;
    }
    Json(Health {
        models,
        status: "ok",
    })
    .into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut gauges = Vec::new();
    for model in state.models.loaded() {
        match tokio::time::timeout(STATS_TIMEOUT, model.supervisor.stats()).await {
            Ok(Ok(stats)) => gauges.push(SchedulerGauges {
                model: model.id.clone(),
                queued: stats.queued,
                running: stats.running,
                n_parallel: stats.n_parallel,
                steps: stats.steps,
            }),
            Ok(Err(error)) => tracing::warn!(model = %model.id, %error, "no scheduler stats"),
            Err(_) => tracing::warn!(model = %model.id, "scheduler stats timed out"),
        }
    }
    gauges.sort_by(|a, b| a.model.cmp(&b.model));
    let text = state.metrics.render(&gauges, state.models.loading_count());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// Unknown routes. The path is not repeated back (it could be anything, a file path too).
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        crate::error::TYPE_INVALID_REQUEST,
        "There is no such route. The OpenAI API is under /v1 (chat/completions, completions, models); also /health and /metrics.",
    )
    .with_code("unknown_url")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::error::TYPE_INVALID_REQUEST,
        "This route does not accept this method.",
    )
    .with_code("method_not_allowed")
}
