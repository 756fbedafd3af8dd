//! A streamed completion: the engine's events turned into SSE chunks (the role or echoed
//! prompt first, thinking and words as they come, held-back tool calls, the finish and usage
//! chunks, `[DONE]`), an error event after the 200, and a client that leaves counted and its
//! generation cancelled.

use std::sync::Arc;

use axum::body::Bytes;
use axum::response::Response;
use hearth_protocol::{FinishReason, RequestMetrics, SplitText, TokenLogprob};
use hearth_supervisor::{GenerationEvent, GenerationStream, SupervisorError};

use super::completion::answer_calls;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::models::ModelLease;
use crate::openai::{finish_reason_str, AnswerContext, TOOL_CALLS_FINISH_REASON};
use crate::reasoning::ReasoningStream;
use crate::request::Endpoint;
use crate::sse;
use crate::tools::ToolCallStream;

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
pub(super) struct StreamingAnswer {
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
    /// A stream that has sent nothing yet: `echo` (completions) or the role chunk (chat) first.
    pub(super) fn new(
        stream: GenerationStream,
        lease: ModelLease,
        context: AnswerContext,
        metrics: Arc<Metrics>,
        echo: Option<String>,
        tools: Option<ToolCallStream>,
        reasoning: ReasoningStream,
    ) -> Self {
        StreamingAnswer {
            stream,
            lease,
            context,
            metrics,
            phase: Phase::Opening { echo },
            text_offset: 0,
            tools,
            reasoning,
        }
    }

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

pub(super) fn stream_answer(answer: StreamingAnswer) -> Response {
    sse::response(futures_util::stream::unfold(
        answer,
        |mut answer| async move {
            let bytes = answer.next_bytes().await?;
            Some((bytes, answer))
        },
    ))
}
