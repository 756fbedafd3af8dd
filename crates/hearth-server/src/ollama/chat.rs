//! `POST /api/chat` and `POST /api/generate`: one generation each, streamed as NDJSON lines
//! (`done: false` with each piece of text, then a last line with `done_reason` and the
//! timings) unless `stream` is false. As on `/v1`, the engine's first event decides the
//! status, so a prompt that does not fit or a full queue is an HTTP error; a failure after
//! that is an `{"error": ...}` line. A client that goes away cancels the generation.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_protocol::{FinishReason, RequestMetrics};
use hearth_supervisor::{GenerationEvent, GenerationStream, SupervisorError};

use super::wire::{AnswerLine, AnswerMessage, AnswerText, ErrorBody, Timings};
use super::{model_id, nanos, ndjson, now_rfc3339};
use crate::error::ApiError;
use crate::handlers::{wait_for_start, JsonBody};
use crate::metrics::Metrics;
use crate::models::{KeepAlive, ModelLease, ModelManager};
use crate::request::{parse_ollama_chat, parse_ollama_generate, OllamaGeneration};
use crate::AppState;

/// Which endpoint, and so which line shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
}

impl Kind {
    fn prompt_param(self) -> &'static str {
        match self {
            Kind::Chat => "messages",
            Kind::Generate => "prompt",
        }
    }
}

/// What every line of one answer repeats.
#[derive(Debug, Clone)]
struct Answer {
    kind: Kind,
    model: String,
}

/// A line: a piece of text (the last one with its end), or an error.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum Line {
    Answer(AnswerLine),
    Error(ErrorBody),
}

impl Answer {
    fn line(&self, text: String, end: Option<(&'static str, Timings)>) -> Line {
        let (done_reason, timings) = match end {
            Some((reason, timings)) => (Some(reason), Some(timings)),
            None => (None, None),
        };
        Line::Answer(AnswerLine {
            model: self.model.clone(),
            created_at: now_rfc3339(),
            text: match self.kind {
                Kind::Chat => AnswerText::Message(AnswerMessage {
                    role: "assistant",
                    content: text,
                }),
                Kind::Generate => AnswerText::Response(text),
            },
            done: done_reason.is_some(),
            done_reason,
            timings,
        })
    }
}

/// Ollama's `done_reason` for how a generation ended.
fn done_reason(finish_reason: FinishReason) -> &'static str {
    match finish_reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "cancelled",
    }
}

/// The engine's figures as Ollama's timings (nanoseconds).
fn timings(metrics: &RequestMetrics) -> Timings {
    Timings {
        total_duration: nanos(metrics.e2e_ms),
        load_duration: 0,
        prompt_eval_count: metrics.prompt_tokens,
        prompt_eval_duration: nanos(metrics.prefill_ms),
        eval_count: metrics.generated_tokens,
        eval_duration: nanos(metrics.e2e_ms - metrics.ttft_ms),
    }
}

pub async fn chat(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = parse_ollama_chat(&body)?;
    answer(state, request, Kind::Chat).await
}

pub async fn generate(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = parse_ollama_generate(&body)?;
    answer(state, request, Kind::Generate).await
}

async fn answer(
    state: AppState,
    request: OllamaGeneration,
    kind: Kind,
) -> Result<Response, ApiError> {
    let id = model_id(&state, &request.model);
    let lease = state.models.acquire(&id).await?;
    if let Some(keep_alive) = request.keep_alive {
        lease.set_keep_alive(keep_alive);
    }
    let unload_after = request.keep_alive == Some(KeepAlive::For(std::time::Duration::ZERO));
    let answer = Answer {
        kind,
        model: request.model.clone(),
    };
    let Some(prompt) = request.prompt.clone() else {
        // An empty prompt only loads the model (or, with `keep_alive: 0`, unloads it).
        drop(lease);
        let reason = if unload_after {
            state.models.unload_idle(std::time::Instant::now());
            "unload"
        } else {
            "load"
        };
        return Ok(
            Json(answer.line(String::new(), Some((reason, Timings::default())))).into_response(),
        );
    };
    let param = kind.prompt_param();
    let mut stream = lease
        .generate(request.generation(prompt))
        .await
        .map_err(|error| ApiError::from_supervisor(error, param))?;
    wait_for_start(&mut stream, param).await?;
    let running = Running {
        stream,
        model_id: lease.id().to_string(),
        lease: Some(lease),
        answer,
        metrics: state.metrics.clone(),
        models: state.models.clone(),
        unload_after,
        finished: false,
    };
    if request.stream {
        Ok(ndjson(futures_util::stream::unfold(
            running,
            |mut running| async move {
                let line = running.next_line().await?;
                Some((line, running))
            },
        )))
    } else {
        running.whole().await
    }
}

/// A started generation and what its lines need.
struct Running {
    stream: GenerationStream,
    /// Held until the answer ends (taken in `drop`, before a `keep_alive: 0` unload).
    lease: Option<ModelLease>,
    /// The model's id, for the metrics.
    model_id: String,
    answer: Answer,
    metrics: Arc<Metrics>,
    models: Arc<ModelManager>,
    unload_after: bool,
    finished: bool,
}

/// What the next engine event means for an answer.
enum Step {
    Text(String),
    End(&'static str, Timings),
    Failed(SupervisorError),
}

impl Running {
    /// The next piece of text, the end (recorded in the metrics), or a failure.
    async fn step(&mut self) -> Step {
        loop {
            let step = match self.stream.next().await {
                Some(Ok(GenerationEvent::Text { text, .. })) if text.is_empty() => continue,
                Some(Ok(GenerationEvent::Text { text, .. })) => return Step::Text(text),
                Some(Ok(GenerationEvent::Started { .. })) => continue,
                Some(Ok(GenerationEvent::Done {
                    finish_reason,
                    metrics,
                    ..
                })) => {
                    self.metrics
                        .record_generation(&self.model_id, finish_reason, &metrics);
                    Step::End(done_reason(finish_reason), timings(&metrics))
                }
                Some(Err(error)) => Step::Failed(error),
                None => Step::Failed(SupervisorError::WorkerCrashed {
                    status: "worker exited".into(),
                }),
            };
            self.finished = true;
            return step;
        }
    }

    /// The next NDJSON line, or `None` after the last.
    async fn next_line(&mut self) -> Option<Line> {
        if self.finished {
            return None;
        }
        Some(match self.step().await {
            Step::Text(text) => self.answer.line(text, None),
            Step::End(reason, timings) => self.answer.line(String::new(), Some((reason, timings))),
            Step::Failed(error) => {
                self.metrics.record_stream_error();
                let api = ApiError::from_supervisor(error, self.answer.kind.prompt_param());
                Line::Error(ErrorBody { error: api.message })
            }
        })
    }

    /// Collects the answer into one object (`stream: false`).
    async fn whole(mut self) -> Result<Response, ApiError> {
        let mut text = String::new();
        loop {
            match self.step().await {
                Step::Text(piece) => text.push_str(&piece),
                Step::End(reason, timings) => {
                    return Ok(Json(self.answer.line(text, Some((reason, timings)))).into_response())
                }
                Step::Failed(error) => {
                    return Err(ApiError::from_supervisor(
                        error,
                        self.answer.kind.prompt_param(),
                    ))
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away: dropping the stream cancels the generation.
            self.metrics.record_client_disconnect(&self.model_id);
        }
        drop(self.lease.take());
        if self.unload_after {
            // `keep_alive: 0`: unloaded now that this answer let go of the model.
            self.models.unload_idle(std::time::Instant::now());
        }
    }
}
