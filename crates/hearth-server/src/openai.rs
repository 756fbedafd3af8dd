//! The response shapes of the OpenAI API (chat completions, legacy completions, their stream
//! chunks, usage, log-probabilities, the model list), plus Hearth's `timings`, named as
//! llama.cpp's server names them so tools that read those keys keep working.
//!
//! Fields are declared in sorted order, as the `json!` objects these types replaced sent
//! them ([`crate::wire`]).

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use hearth_protocol::{FinishReason, RequestMetrics, TokenLogprob, TopLogprob};
use serde::Serialize;

use crate::request::Endpoint;

/// Reported as `system_fingerprint`: which build answered.
pub const SYSTEM_FINGERPRINT: &str = concat!("hearth-", env!("CARGO_PKG_VERSION"));
/// The `owned_by` of every model.
pub const MODEL_OWNER: &str = "hearth";
/// The role of every answer.
const ASSISTANT: &str = "assistant";

/// A fresh response id: the endpoint's prefix and 32 hex digits, unique within the process
/// and unpredictable across processes (a per-process random hasher key).
pub fn new_response_id(endpoint: Endpoint) -> String {
    new_id(match endpoint {
        Endpoint::ChatCompletions => "chatcmpl-",
        Endpoint::Completions => "cmpl-",
    })
}

/// A fresh id: `prefix` and 32 hex digits, unique within the process and unpredictable
/// across processes (a per-process random hasher key).
pub fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(RandomState::new);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let digest = |salt: u64| {
        let mut hasher = keys.build_hasher();
        hasher.write_u64(count);
        hasher.write_u64(salt);
        hasher.finish()
    };
    format!("{prefix}{:016x}{:016x}", digest(1), digest(2))
}

/// One object of an answer: the whole answer (`chat.completion`, `text_completion`) or one
/// chunk of a stream (`chat.completion.chunk`, `text_completion`).
#[derive(Debug, Serialize)]
pub struct Completion<'a> {
    pub choices: Vec<Choice<'a>>,
    pub created: u64,
    pub id: &'a str,
    pub model: &'a str,
    pub object: &'static str,
    pub system_fingerprint: &'static str,
    /// On the whole answer, the finish chunk and the usage chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Absent, `null` (every chunk but the last when `include_usage` is asked for, as OpenAI
    /// sends it), or the counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// The one choice of an answer, in the endpoint's and the object's shape.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Choice<'a> {
    /// A whole chat answer.
    Message(MessageChoice<'a>),
    /// A chunk of a chat stream.
    Delta(DeltaChoice<'a>),
    /// A legacy completion, whole or chunk.
    Text(TextChoice<'a>),
}

#[derive(Debug, Serialize)]
pub struct MessageChoice<'a> {
    pub finish_reason: &'static str,
    pub index: u32,
    pub logprobs: Option<ChatLogprobs<'a>>,
    pub message: AssistantMessage<'a>,
}

/// The answer's message, or the first delta of a stream (with empty content).
#[derive(Debug, Serialize)]
pub struct AssistantMessage<'a> {
    /// `null` when the answer is tool calls and no words.
    pub content: Option<&'a str>,
    /// The model's thinking, apart from its answer (as llama-server and DeepSeek send it);
    /// absent when it did not think.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    /// Always `null`: Hearth's models do not refuse through the API.
    pub refusal: Option<&'static str>,
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallObject<'a>>>,
}

impl<'a> AssistantMessage<'a> {
    fn new(content: &'a str) -> Self {
        Self {
            content: Some(content),
            reasoning_content: None,
            refusal: None,
            role: ASSISTANT,
            tool_calls: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DeltaChoice<'a> {
    pub delta: Delta<'a>,
    pub finish_reason: Option<&'static str>,
    pub index: u32,
    pub logprobs: Option<ChatLogprobs<'a>>,
}

/// What a chat chunk adds to the answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Delta<'a> {
    /// The first chunk: the role, and no text yet.
    Role(AssistantMessage<'a>),
    Text {
        content: &'a str,
    },
    /// A piece of the model's thinking.
    Reasoning {
        reasoning_content: &'a str,
    },
    ToolCalls {
        tool_calls: Vec<ToolCallDelta<'a>>,
    },
    /// The finish chunk: nothing.
    End {},
}

#[derive(Debug, Serialize)]
pub struct TextChoice<'a> {
    pub finish_reason: Option<&'static str>,
    pub index: u32,
    pub logprobs: Option<CompletionLogprobs<'a>>,
    pub text: &'a str,
}

/// Chat log-probabilities: `{"content": [{bytes, logprob, token, top_logprobs}], "refusal": null}`.
#[derive(Debug, Serialize)]
pub struct ChatLogprobs<'a> {
    pub content: Vec<ChatTokenLogprob<'a>>,
    pub refusal: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct ChatTokenLogprob<'a> {
    pub bytes: &'a [u8],
    pub logprob: f64,
    pub token: &'a str,
    pub top_logprobs: Vec<ChatTopLogprob<'a>>,
}

/// One token and its log-probability. `logprob` is sent as the f64 the engine's f32 widens
/// to, as it always was.
#[derive(Debug, Serialize)]
pub struct ChatTopLogprob<'a> {
    pub bytes: &'a [u8],
    pub logprob: f64,
    pub token: &'a str,
}

impl<'a> From<&'a TopLogprob> for ChatTopLogprob<'a> {
    fn from(top: &'a TopLogprob) -> Self {
        Self {
            bytes: &top.bytes,
            logprob: f64::from(top.logprob),
            token: &top.token,
        }
    }
}

/// Legacy completion log-probabilities: parallel arrays, and a token → logprob map per token.
#[derive(Debug, Serialize)]
pub struct CompletionLogprobs<'a> {
    pub text_offset: Vec<usize>,
    pub token_logprobs: Vec<f64>,
    pub tokens: Vec<&'a str>,
    pub top_logprobs: Vec<BTreeMap<&'a str, f64>>,
}

/// An answer's thinking, apart from its words.
#[derive(Debug, Clone, Default)]
pub struct AnswerReasoning {
    pub text: String,
    /// Its token count; `None` when the model does not think in tags (no count is reported).
    pub tokens: Option<u32>,
}

/// One entry of `/v1/models` (which is a [`crate::wire::List`] of them).
#[derive(Debug, Clone, Serialize)]
pub struct ModelObject {
    pub created: u64,
    pub id: String,
    pub object: &'static str,
    /// `hearth`, or the remote provider's name.
    pub owned_by: String,
    /// The remote provider that serves the model: its answers leave this machine. Absent
    /// for the models on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// What every object of one answer shares.
#[derive(Debug, Clone)]
pub struct AnswerContext {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
    pub include_usage: bool,
    pub logprobs: bool,
}

impl AnswerContext {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::ChatCompletions, false) => "chat.completion",
            (Endpoint::ChatCompletions, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    fn envelope<'a>(&'a self, chunk: bool, choices: Vec<Choice<'a>>) -> Completion<'a> {
        Completion {
            choices,
            created: self.created,
            id: &self.id,
            model: &self.model,
            object: self.object(chunk),
            system_fingerprint: SYSTEM_FINGERPRINT,
            timings: None,
            usage: None,
        }
    }

    /// The whole answer (`stream: false`), with the tool calls read from it (`finish_reason: tool_calls` when
    /// there are any, and `content: null` when they are all it says).
    pub fn full_answer<'a>(
        &'a self,
        text: &'a str,
        reasoning: &'a AnswerReasoning,
        calls: &'a [AnswerCall],
        finish_reason: FinishReason,
        logprobs: &'a [TokenLogprob],
        metrics: &RequestMetrics,
    ) -> Completion<'a> {
        let finish_reason = if calls.is_empty() {
            finish_reason_str(finish_reason)
        } else {
            TOOL_CALLS_FINISH_REASON
        };
        let choice = match self.endpoint {
            Endpoint::ChatCompletions => Choice::Message(MessageChoice {
                finish_reason,
                index: 0,
                logprobs: self.chat_logprobs(logprobs),
                message: AssistantMessage {
                    content: (calls.is_empty() || !text.is_empty()).then_some(text),
                    reasoning_content: (!reasoning.text.is_empty())
                        .then_some(reasoning.text.as_str()),
                    tool_calls: (!calls.is_empty())
                        .then(|| calls.iter().map(AnswerCall::object).collect()),
                    ..AssistantMessage::new("")
                },
            }),
            Endpoint::Completions => Choice::Text(TextChoice {
                finish_reason: Some(finish_reason),
                index: 0,
                logprobs: self.completion_logprobs(logprobs, 0),
                text,
            }),
        };
        Completion {
            timings: Some(timings(metrics)),
            usage: Some(Some(usage(metrics, reasoning.tokens))),
            ..self.envelope(false, vec![choice])
        }
    }

    /// The first chunk of a chat stream: the role, and no text yet.
    pub fn role_chunk(&self) -> Completion<'_> {
        self.chunk(Choice::Delta(DeltaChoice {
            delta: Delta::Role(AssistantMessage::new("")),
            finish_reason: None,
            index: 0,
            logprobs: None,
        }))
    }

    /// A chunk of the model's thinking (chat only).
    pub fn reasoning_chunk<'a>(
        &'a self,
        reasoning: &'a str,
        logprobs: &'a [TokenLogprob],
    ) -> Completion<'a> {
        self.chunk(Choice::Delta(DeltaChoice {
            delta: Delta::Reasoning {
                reasoning_content: reasoning,
            },
            finish_reason: None,
            index: 0,
            logprobs: self.chat_logprobs(logprobs),
        }))
    }

    /// A chunk of text. `text_offset` is where it starts in the whole answer (for the legacy
    /// completions' `text_offset`).
    pub fn text_chunk<'a>(
        &'a self,
        text: &'a str,
        logprobs: &'a [TokenLogprob],
        text_offset: usize,
    ) -> Completion<'a> {
        self.chunk(match self.endpoint {
            Endpoint::ChatCompletions => Choice::Delta(DeltaChoice {
                delta: Delta::Text { content: text },
                finish_reason: None,
                index: 0,
                logprobs: self.chat_logprobs(logprobs),
            }),
            Endpoint::Completions => Choice::Text(TextChoice {
                finish_reason: None,
                index: 0,
                logprobs: self.completion_logprobs(logprobs, text_offset),
                text,
            }),
        })
    }

    /// The chunks of one streamed call: the opening (id, type, name, empty arguments), then
    /// the arguments in fragments, as OpenAI streams them.
    pub fn tool_call_chunks<'a>(&'a self, index: u32, call: &'a AnswerCall) -> Vec<Completion<'a>> {
        let delta = |tool_call: ToolCallDelta<'a>| {
            self.chunk(Choice::Delta(DeltaChoice {
                delta: Delta::ToolCalls {
                    tool_calls: vec![tool_call],
                },
                finish_reason: None,
                index: 0,
                logprobs: None,
            }))
        };
        let mut chunks = vec![delta(ToolCallDelta {
            function: FunctionCall {
                arguments: "",
                name: Some(&call.name),
            },
            id: Some(&call.id),
            index,
            kind: Some("function"),
        })];
        chunks.extend(argument_fragments(&call.arguments).map(|fragment| {
            delta(ToolCallDelta {
                function: FunctionCall {
                    arguments: fragment,
                    name: None,
                },
                id: None,
                index,
                kind: None,
            })
        }));
        chunks
    }

    /// The chunk that ends the choice: its `finish_reason` (`stop`, `length`, `tool_calls`),
    /// and Hearth's timings.
    pub fn finish_chunk(
        &self,
        finish_reason: &'static str,
        metrics: &RequestMetrics,
    ) -> Completion<'_> {
        let finish_reason = Some(finish_reason);
        let choice = match self.endpoint {
            Endpoint::ChatCompletions => Choice::Delta(DeltaChoice {
                delta: Delta::End {},
                finish_reason,
                index: 0,
                logprobs: None,
            }),
            Endpoint::Completions => Choice::Text(TextChoice {
                finish_reason,
                index: 0,
                logprobs: None,
                text: "",
            }),
        };
        Completion {
            timings: Some(timings(metrics)),
            ..self.chunk(choice)
        }
    }

    /// The last chunk when `stream_options.include_usage` is set: no choices, the usage.
    pub fn usage_chunk(
        &self,
        metrics: &RequestMetrics,
        reasoning_tokens: Option<u32>,
    ) -> Completion<'_> {
        Completion {
            timings: Some(timings(metrics)),
            usage: Some(Some(usage(metrics, reasoning_tokens))),
            ..self.envelope(true, Vec::new())
        }
    }

    fn chunk<'a>(&'a self, choice: Choice<'a>) -> Completion<'a> {
        Completion {
            // OpenAI sends `usage: null` on every chunk but the last when usage is asked for.
            usage: self.include_usage.then_some(None),
            ..self.envelope(true, vec![choice])
        }
    }

    fn chat_logprobs<'a>(&self, logprobs: &'a [TokenLogprob]) -> Option<ChatLogprobs<'a>> {
        self.logprobs.then(|| ChatLogprobs {
            content: logprobs
                .iter()
                .map(|token| ChatTokenLogprob {
                    bytes: &token.bytes,
                    logprob: f64::from(token.logprob),
                    token: &token.token,
                    top_logprobs: token.top_logprobs.iter().map(Into::into).collect(),
                })
                .collect(),
            refusal: None,
        })
    }

    fn completion_logprobs<'a>(
        &self,
        logprobs: &'a [TokenLogprob],
        text_offset: usize,
    ) -> Option<CompletionLogprobs<'a>> {
        if !self.logprobs {
            return None;
        }
        let mut offsets = Vec::with_capacity(logprobs.len());
        let mut offset = text_offset;
        for token in logprobs {
            offsets.push(offset);
            offset += token.token.len();
        }
        Some(CompletionLogprobs {
            text_offset: offsets,
            token_logprobs: logprobs.iter().map(|t| f64::from(t.logprob)).collect(),
            tokens: logprobs.iter().map(|t| t.token.as_str()).collect(),
            top_logprobs: logprobs
                .iter()
                .map(|t| {
                    t.top_logprobs
                        .iter()
                        .map(|top| (top.token.as_str(), f64::from(top.logprob)))
                        .collect()
                })
                .collect(),
        })
    }
}

/// `stop` or `length`. A cancelled answer is never sent (its client is gone); should one be,
/// `stop` is the closest OpenAI value.
pub fn finish_reason_str(finish_reason: FinishReason) -> &'static str {
    match finish_reason {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// One entry of `/v1/models`.
pub fn model_object(id: &str, created: u64) -> ModelObject {
    ModelObject {
        created,
        id: id.to_string(),
        object: "model",
        owned_by: MODEL_OWNER.to_string(),
        provider: None,
    }
}

/// A remote provider's model in `/v1/models`.
pub fn remote_model_object(id: &str, created: u64, provider: &str) -> ModelObject {
    ModelObject {
        created,
        id: id.to_string(),
        object: "model",
        owned_by: provider.to_string(),
        provider: Some(provider.to_string()),
    }
}

mod tool_calls;
mod usage;

pub use tool_calls::{
    argument_fragments, AnswerCall, FunctionCall, ToolCallDelta, ToolCallObject,
    TOOL_CALLS_FINISH_REASON,
};
pub use usage::{timings, usage, Timings, Usage};

#[cfg(test)]
mod tests;
