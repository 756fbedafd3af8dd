//! What a generation asks of the engine ([`GenerateRequest`]): the chat or raw prompt, tools,
//! sampling, output constraints, log-probabilities and the context-overflow policy.

use serde::{Deserialize, Serialize};

/// The speaker of one chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result, answering an assistant message's tool call.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// An assistant message's calls of tools (in the history of a tool conversation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A tool message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A function the model may call (OpenAI's `tools[].function`, Anthropic's `tools[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON schema of the arguments (an object schema).
    pub parameters: serde_json::Value,
}

/// One call of a tool: the function's name and its arguments, always a parsed JSON value
/// (arguments that do not parse are never a call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Prompt {
    /// Chat messages, rendered with the model's chat template (generation prompt appended).
    Chat { messages: Vec<ChatMessage> },
    /// Raw text, tokenized as is (a completion).
    Text { text: String },
    /// Token ids, used as is (benchmarks).
    Tokens { tokens: Vec<i32> },
}

/// Sampling settings. `temperature <= 0` means greedy decoding (argmax), which is deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: i32,
    /// 1.0 disables top-p.
    pub top_p: f32,
    /// 0.0 disables min-p.
    pub min_p: f32,
    /// 1.0 disables the repetition penalty.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at (-1: the whole context).
    pub repeat_last_n: i32,
    /// 0.0 disables it.
    pub presence_penalty: f32,
    /// 0.0 disables it.
    pub frequency_penalty: f32,
    /// Seed of the random sampler; `None` picks one per request.
    pub seed: Option<u32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks every field is finite and in range, naming the first that is not.
    pub fn validate(&self) -> Result<(), String> {
        let finite = [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("repeat_penalty", self.repeat_penalty),
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ];
        for (name, value) in finite {
            if !value.is_finite() {
                return Err(format!("{name} must be a finite number, got {value}"));
            }
        }
        if self.temperature < 0.0 {
            return Err(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(format!("top_p must be in [0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if self.top_k < 0 {
            return Err(format!("top_k must be >= 0, got {}", self.top_k));
        }
        if self.repeat_penalty <= 0.0 {
            return Err(format!(
                "repeat_penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        if self.repeat_last_n < -1 {
            return Err(format!(
                "repeat_last_n must be >= -1, got {}",
                self.repeat_last_n
            ));
        }
        Ok(())
    }
}

/// One generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// Chosen by the supervisor; unique among the requests in flight on one worker.
    pub request_id: u64,
    pub prompt: Prompt,
    #[serde(default)]
    pub sampling: SamplingParams,
    /// Most tokens to generate; `None` means until end of generation or a full context.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Strings that end the generation; never part of the output.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (benchmarks that need a fixed length).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Constrain the output (JSON, a JSON schema, a GBNF grammar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<OutputConstraint>,
    /// Report each generated token's log-probability and this many alternatives (0..=20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// What to do when a chat does not fit the context.
    #[serde(default)]
    pub context_overflow: ContextOverflow,
    /// Functions the model may call: given to a chat's template (or described in its system
    /// message when the template takes none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    /// Whether a model that thinks in tags may think: off, its template is rendered with
    /// `enable_thinking=false` and the prompt ends with an empty, closed thinking block
    /// ([`crate::close_thinking_in_prompt`]).
    #[serde(default = "thinking_on", skip_serializing_if = "is_thinking_on")]
    pub enable_thinking: bool,
    /// Whether this request may speculate when the model does (`false`: one token per step,
    /// as beside a model without speculation; `hearth bench --neighbour` measures such a
    /// sequence beside one that speculates).
    #[serde(default = "speculate_on", skip_serializing_if = "is_speculate_on")]
    pub speculate: bool,
}

fn speculate_on() -> bool {
    true
}

fn is_speculate_on(speculate: &bool) -> bool {
    *speculate
}

fn thinking_on() -> bool {
    true
}

fn is_thinking_on(enable_thinking: &bool) -> bool {
    *enable_thinking
}

/// Most alternatives per token that `logprobs` may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// A constraint on the generated text, enforced by a grammar while sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputConstraint {
    /// Any JSON object.
    JsonObject,
    /// JSON matching this JSON schema (converted with llama.cpp's JSON-schema-to-grammar).
    JsonSchema { schema: serde_json::Value },
    /// A GBNF grammar whose start rule is `root`.
    Grammar { gbnf: String },
}

/// What to do when a chat's prompt does not fit the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextOverflow {
    /// Refuse with `ContextLengthExceeded` (the API's default).
    #[default]
    Error,
    /// Keep the system messages and drop the oldest turns until it fits; the number dropped is
    /// reported in `Started`.
    DropOldestTurns,
}

/// One alternative token and its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// A generated token's log-probability, with the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top_logprobs: Vec<TopLogprob>,
}
