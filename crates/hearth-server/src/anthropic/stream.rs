//! A streamed Messages answer: the engine's events as Anthropic's named SSE events, in its
//! order: `message_start`, `content_block_start` (the text block), `ping`, the text's
//! `content_block_delta`s, `content_block_stop`, then each tool call as a `tool_use` block
//! (its `input` in `input_json_delta` fragments), `message_delta` (`stop_reason`,
//! `stop_sequence`, the output tokens) and `message_stop`. A failure after the 200 is an
//! `error` event, and the stream ends.
//!
//! Text that may be a tool call is held back by [`ToolCallStream`]; a forced call opens no
//! text block (its output is the call).

use std::sync::Arc;

use axum::body::Bytes;
use axum::response::Response;
use hearth_protocol::FinishReason;
use hearth_supervisor::{GenerationEvent, GenerationStream, SupervisorError};
use serde_json::{Map, Value};

use super::wire::{
    BlockDelta, ContentBlock, DeltaUsage, MessageDelta, MessageObject, MessageUsage, StreamEvent,
};
use super::{call_inputs, error_body, stop_reason, PROMPT_PARAM};
use crate::error::ApiError;
use crate::handlers::answer_calls;
use crate::metrics::Metrics;
use crate::models::ModelLease;
use crate::openai::argument_fragments;
use crate::sse;
use crate::tools::{ToolCallStream, ToolSet};

/// One streamed answer's state.
#[derive(Debug)]
pub(super) struct MessageStream {
    generation: GenerationStream,
    lease: ModelLease,
    metrics: Arc<Metrics>,
    id: String,
    prompt_tokens: u32,
    tools: Option<ToolCallStream>,
    forced: bool,
    /// The text block's index, once opened.
    text_block: Option<u32>,
    next_index: u32,
    opened: bool,
    finished: bool,
}

impl MessageStream {
    pub(super) fn new(
        generation: GenerationStream,
        lease: ModelLease,
        metrics: Arc<Metrics>,
        id: String,
        prompt_tokens: u32,
        tools: Option<ToolSet>,
    ) -> Self {
        Self {
            generation,
            lease,
            metrics,
            id,
            prompt_tokens,
            forced: tools.as_ref().is_some_and(ToolSet::is_forced),
            tools: tools.map(ToolCallStream::new),
            text_block: None,
            next_index: 0,
            opened: false,
            finished: false,
        }
    }

    fn push(out: &mut String, event: &StreamEvent<'_>) {
        out.push_str(&sse::named_frame(event.name(), event));
    }

    /// Opens the text block if it is not yet open.
    fn open_text(&mut self, out: &mut String) -> u32 {
        if let Some(index) = self.text_block {
            return index;
        }
        let index = self.next_index;
        self.next_index += 1;
        self.text_block = Some(index);
        Self::push(
            out,
            &StreamEvent::ContentBlockStart {
                index,
                content_block: ContentBlock::Text { text: "" },
            },
        );
        index
    }

    fn text_delta(&mut self, out: &mut String, text: &str) {
        let index = self.open_text(out);
        Self::push(
            out,
            &StreamEvent::ContentBlockDelta {
                index,
                delta: BlockDelta::TextDelta { text },
            },
        );
    }

    /// `message_start`, the text block (unless a call is forced) and `ping`.
    fn opening(&mut self) -> String {
        let mut out = String::new();
        let usage = MessageUsage {
            input_tokens: self.prompt_tokens,
            output_tokens: 0,
        };
        Self::push(
            &mut out,
            &StreamEvent::MessageStart {
                message: MessageObject::new(&self.id, self.lease.id(), usage),
            },
        );
        if !self.forced {
            self.open_text(&mut out);
        }
        Self::push(&mut out, &StreamEvent::Ping);
        out
    }

    /// The next bytes of the stream, or `None` at its end.
    async fn next_bytes(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        if !self.opened {
            self.opened = true;
            return Some(Bytes::from(self.opening()));
        }
        loop {
            let mut out = String::new();
            match self.generation.next().await {
                Some(Ok(GenerationEvent::Text { text, .. })) => {
                    let sent = match &mut self.tools {
                        Some(tools) => tools.push(&text),
                        None => text,
                    };
                    if sent.is_empty() {
                        continue;
                    }
                    self.text_delta(&mut out, &sent);
                }
                Some(Ok(GenerationEvent::Started { .. })) => continue,
                Some(Ok(GenerationEvent::Done {
                    finish_reason,
                    metrics,
                    stop_sequence,
                })) => {
                    self.finished = true;
                    self.metrics
                        .record_generation(self.lease.id(), finish_reason, &metrics);
                    self.closing(
                        &mut out,
                        finish_reason,
                        stop_sequence.as_deref(),
                        metrics.generated_tokens,
                    );
                }
                Some(Err(error)) => self.error_event(&mut out, error),
                None => self.error_event(
                    &mut out,
                    SupervisorError::WorkerCrashed {
                        status: "worker exited".into(),
                    },
                ),
            }
            return Some(Bytes::from(out));
        }
    }

    /// The held text and calls, the blocks' ends, `message_delta` and `message_stop`.
    fn closing(
        &mut self,
        out: &mut String,
        finish_reason: FinishReason,
        stop_sequence: Option<&str>,
        output_tokens: u32,
    ) {
        let (content, calls) = match self.tools.take() {
            Some(tools) => {
                let end = tools.finish();
                (end.content, answer_calls(end.calls))
            }
            None => (String::new(), Vec::new()),
        };
        if !content.is_empty() {
            self.text_delta(out, &content);
        }
        if let Some(index) = self.text_block {
            Self::push(out, &StreamEvent::ContentBlockStop { index });
        }
        let empty_input = Value::Object(Map::new());
        for (call, input) in calls.iter().zip(call_inputs(&calls)) {
            let index = self.next_index;
            self.next_index += 1;
            Self::push(
                out,
                &StreamEvent::ContentBlockStart {
                    index,
                    content_block: ContentBlock::ToolUse {
                        id: &call.id,
                        name: &call.name,
                        input: &empty_input,
                    },
                },
            );
            let json = input.to_string();
            for fragment in argument_fragments(&json) {
                Self::push(
                    out,
                    &StreamEvent::ContentBlockDelta {
                        index,
                        delta: BlockDelta::InputJsonDelta {
                            partial_json: fragment,
                        },
                    },
                );
            }
            Self::push(out, &StreamEvent::ContentBlockStop { index });
        }
        Self::push(
            out,
            &StreamEvent::MessageDelta {
                delta: MessageDelta {
                    stop_reason: stop_reason(
                        finish_reason,
                        stop_sequence.is_some(),
                        !calls.is_empty(),
                    ),
                    stop_sequence,
                },
                usage: DeltaUsage { output_tokens },
            },
        );
        Self::push(out, &StreamEvent::MessageStop);
    }

    /// A failure after the 200: an `error` event, then the end.
    fn error_event(&mut self, out: &mut String, error: SupervisorError) {
        self.finished = true;
        self.metrics.record_stream_error();
        let api = ApiError::from_supervisor(error, PROMPT_PARAM);
        let body = error_body(api.status, api.message);
        Self::push(out, &StreamEvent::Error { error: body.error });
    }
}

impl Drop for MessageStream {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away; dropping `generation` (next) cancels the answer.
            self.metrics.record_client_disconnect(self.lease.id());
        }
    }
}

pub(super) fn response(stream: MessageStream) -> Response {
    sse::response(futures_util::stream::unfold(
        stream,
        |mut stream| async move {
            let bytes = stream.next_bytes().await?;
            Some((bytes, stream))
        },
    ))
}
