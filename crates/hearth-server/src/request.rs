//! Parsing and validation of the OpenAI request bodies, field by field.
//!
//! Bodies are read as `serde_json::Value` and checked one field at a time rather than through
//! derived structs, so that every failure names its field in `param` (as OpenAI does:
//! `messages[2].content`, `response_format.type`) with a message that says what was expected.
//! Unknown fields are ignored, as llama.cpp's and LM Studio's servers do, so clients that send
//! extras (`user`, `metadata`, `cache_prompt`) keep working. A few llama.cpp-style extensions
//! are understood: `top_k`, `min_p`, `repeat_penalty`, `ignore_eos`, and Hearth's
//! `context_overflow` (`"error"` or `"drop_oldest_turns"`).
//!
//! The field readers are in `fields`, the endpoint-specific parts in `chat` and `completion`;
//! what both share, and a conversation's settings (the sampling fields of a chat request,
//! read by the same code), are here.

mod anthropic;
mod chat;
mod completion;
mod embeddings;
mod fields;
mod ollama;
mod reasoning;
mod tools;

use hearth_protocol::{ChatMessage, ContextOverflow, OutputConstraint, Prompt, SamplingParams};
use hearth_supervisor::Generation;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::tools::ToolSet;
use fields::{type_name, Fields};

pub use anthropic::parse_messages_request;
pub use chat::parse_chat_request;
pub use completion::parse_completion_request;
pub use embeddings::{check_dimensions, parse_embeddings_request, EncodingFormat};
pub use ollama::{
    parse_ollama_chat, parse_ollama_embed, parse_ollama_generate, parse_ollama_model, OllamaEmbed,
    OllamaGeneration,
};
pub(crate) use reasoning::ReasoningOptions;

/// The most tokens a request may ask for. No context is larger, so more is a mistake.
pub const MAX_MAX_TOKENS: u64 = 1 << 20;
/// The most stop sequences per request (OpenAI allows 4; more cost little here).
pub const MAX_STOP_SEQUENCES: usize = 16;
/// The longest stop sequence, in bytes.
pub const MAX_STOP_SEQUENCE_BYTES: usize = 1024;
/// The most alternatives per token for the legacy completions endpoint (OpenAI's limit).
pub const MAX_COMPLETION_LOGPROBS: u64 = 5;
/// Default `max_tokens` of `/v1/completions`, as in OpenAI's reference.
pub const DEFAULT_COMPLETION_MAX_TOKENS: u32 = 16;
/// OpenAI's range for `temperature`.
pub const TEMPERATURE_RANGE: (f64, f64) = (0.0, 2.0);
/// OpenAI's range for `presence_penalty` and `frequency_penalty`.
pub const PENALTY_RANGE: (f64, f64) = (-2.0, 2.0);

/// Which endpoint a request came to; it decides the field holding the prompt and the shapes of
/// the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
}

impl Endpoint {
    /// The field that holds the prompt (named in context-length errors).
    pub fn prompt_param(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "messages",
            Endpoint::Completions => "prompt",
        }
    }
}

/// A validated request of either endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub endpoint: Endpoint,
    pub model: String,
    pub prompt: Prompt,
    pub sampling: SamplingParams,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with empty `choices` and the usage.
    pub include_usage: bool,
    pub constraint: Option<OutputConstraint>,
    /// Alternatives per token to report with log-probabilities; `None` when not asked for.
    pub logprobs: Option<u32>,
    pub ignore_eos: bool,
    pub context_overflow: ContextOverflow,
    /// `/v1/completions` `echo`: the prompt text is put before the answer.
    pub echo: bool,
    /// The tools the model may call (`None`: no tool offered).
    pub tools: Option<ToolSet>,
    /// Whether a thinking model may think, and where its thinking goes.
    pub reasoning: ReasoningOptions,
}

impl CompletionRequest {
    /// The generation to hand to the supervisor.
    pub fn generation(&self) -> Generation {
        Generation {
            prompt: self.prompt.clone(),
            sampling: self.sampling.clone(),
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            constraint: self.constraint.clone(),
            logprobs: self.logprobs,
            context_overflow: self.context_overflow,
            tools: self
                .tools
                .as_ref()
                .map(|set| set.tools.clone())
                .unwrap_or_default(),
            // A constrained answer is held to its grammar from its first token: no room to
            // think first.
            enable_thinking: self.reasoning.enable_thinking && self.constraint.is_none(),
            speculate: true,
        }
    }

    /// A conversation's streamed chat request: its settings, model and messages. The oldest
    /// turns make room when the conversation outgrows the context.
    pub(crate) fn conversation(
        model: String,
        messages: Vec<ChatMessage>,
        settings: SamplingSettings,
    ) -> Result<Self, ApiError> {
        check_model_name(&model)?;
        Ok(Self {
            endpoint: Endpoint::ChatCompletions,
            model,
            prompt: Prompt::Chat { messages },
            sampling: settings.sampling,
            max_tokens: settings.max_tokens,
            stop: settings.stop,
            stream: true,
            include_usage: false,
            constraint: None,
            logprobs: None,
            ignore_eos: settings.ignore_eos,
            context_overflow: ContextOverflow::DropOldestTurns,
            echo: false,
            tools: None,
            reasoning: ReasoningOptions {
                enable_thinking: settings.thinking,
                ..ReasoningOptions::default()
            },
        })
    }
}

/// The sampling fields of a chat completion request, which a conversation's `settings` hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SamplingSettings {
    pub sampling: SamplingParams,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// Whether a thinking model may think (`reasoning_effort`, as a chat request reads it).
    pub thinking: bool,
}

impl Default for SamplingSettings {
    fn default() -> Self {
        Self {
            sampling: SamplingParams::default(),
            max_tokens: None,
            stop: Vec::new(),
            ignore_eos: false,
            thinking: true,
        }
    }
}

/// Reads a conversation's `settings` as a chat completion request reads the same fields (same
/// ranges, same `param` names); other keys are not read.
pub(crate) fn parse_sampling_settings(
    settings: &Map<String, Value>,
) -> Result<SamplingSettings, ApiError> {
    let fields = Fields::new(settings, "");
    // In the order a chat completion body's fields are checked, so the first error is the same.
    let sampling = parse_sampling(&fields)?;
    let stop = parse_stop(&fields)?;
    let ignore_eos = fields.bool("ignore_eos")?.unwrap_or(false);
    let max_tokens = parse_max_tokens(&fields, &["max_tokens"])?;
    let thinking = reasoning::parse_reasoning_options(&fields)?.enable_thinking;
    Ok(SamplingSettings {
        sampling,
        max_tokens,
        stop,
        ignore_eos,
        thinking,
    })
}

/// Fields shared by both endpoints.
struct CommonFields {
    model: String,
    sampling: SamplingParams,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
    ignore_eos: bool,
}

fn parse_common(fields: &Fields<'_>) -> Result<CommonFields, ApiError> {
    let model = parse_model(fields)?;

    let n = fields
        .integer("n", 1, i64::MAX)
        .map_err(|e| e.with_param("n"))?;
    if n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid_param(
            "n",
            "Only n=1 is supported: send several requests for several answers.",
        )
        .with_code("unsupported_value"));
    }

    let sampling = parse_sampling(fields)?;
    fields.unsupported_unless_empty("logit_bias", "logit_bias")?;

    let stop = parse_stop(fields)?;
    let stream = fields.bool("stream")?.unwrap_or(false);
    let mut include_usage = false;
    if let Some(options) = fields.object("stream_options")? {
        if !stream {
            return Err(ApiError::invalid_param(
                "stream_options",
                "'stream_options' is only allowed when 'stream' is true.",
            ));
        }
        include_usage = Fields::new(options, "stream_options.")
            .bool("include_usage")?
            .unwrap_or(false);
    }
    let ignore_eos = fields.bool("ignore_eos")?.unwrap_or(false);
    Ok(CommonFields {
        model,
        sampling,
        stop,
        stream,
        include_usage,
        ignore_eos,
    })
}

/// The required `model` field: a model id, not empty.
fn parse_model(fields: &Fields<'_>) -> Result<String, ApiError> {
    match fields.get("model") {
        None => Err(ApiError::invalid_param(
            "model",
            "'model' is required: the id of a model from GET /v1/models.",
        )
        .with_code("missing_required_parameter")),
        Some(Value::String(model)) => {
            check_model_name(model)?;
            Ok(model.clone())
        }
        Some(other) => Err(fields.wrong_type("model", "a string", other)),
    }
}

fn check_model_name(model: &str) -> Result<(), ApiError> {
    if model.trim().is_empty() {
        return Err(ApiError::invalid_param(
            "model",
            "'model' must not be empty.",
        ));
    }
    Ok(())
}

/// The sampler's fields, OpenAI's and llama.cpp's.
fn parse_sampling(fields: &Fields<'_>) -> Result<SamplingParams, ApiError> {
    let mut sampling = SamplingParams::default();
    if let Some(temperature) = fields.number("temperature", TEMPERATURE_RANGE)? {
        sampling.temperature = temperature as f32;
    }
    if let Some(top_p) = fields.number("top_p", (0.0, 1.0))? {
        sampling.top_p = top_p as f32;
    }
    if let Some(presence) = fields.number("presence_penalty", PENALTY_RANGE)? {
        sampling.presence_penalty = presence as f32;
    }
    if let Some(frequency) = fields.number("frequency_penalty", PENALTY_RANGE)? {
        sampling.frequency_penalty = frequency as f32;
    }
    // llama.cpp-style extensions.
    if let Some(top_k) = fields.integer("top_k", 0, i64::from(i32::MAX))? {
        sampling.top_k = top_k as i32;
    }
    if let Some(min_p) = fields.number("min_p", (0.0, 1.0))? {
        sampling.min_p = min_p as f32;
    }
    if let Some(repeat_penalty) = fields.number("repeat_penalty", (f64::MIN_POSITIVE, 10.0))? {
        sampling.repeat_penalty = repeat_penalty as f32;
    }
    if let Some(seed) = fields.integer("seed", i64::MIN, i64::MAX)? {
        sampling.seed = Some(fold_seed(seed));
    }
    Ok(sampling)
}

/// OpenAI seeds are 64-bit; the sampler takes 32 bits. Folding both halves keeps seeds that
/// differ only in their high bits different.
fn fold_seed(seed: i64) -> u32 {
    let bits = seed as u64;
    (bits as u32) ^ ((bits >> 32) as u32)
}

fn parse_stop(fields: &Fields<'_>) -> Result<Vec<String>, ApiError> {
    let stops: Vec<String> = match fields.get("stop") {
        None => return Ok(Vec::new()),
        Some(Value::String(stop)) => vec![stop.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP_SEQUENCES {
                return Err(ApiError::invalid_param(
                    "stop",
                    format!(
                        "'stop' may hold at most {MAX_STOP_SEQUENCES} sequences, got {}.",
                        items.len()
                    ),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(stop) => Ok(stop.clone()),
                    other => Err(ApiError::invalid_param(
                        format!("stop[{index}]"),
                        format!(
                            "'stop[{index}]' must be a string, got {}.",
                            type_name(other)
                        ),
                    )
                    .with_code("invalid_type")),
                })
                .collect::<Result<_, _>>()?
        }
        Some(other) => {
            return Err(fields.wrong_type("stop", "a string or an array of strings", other))
        }
    };
    for (index, stop) in stops.iter().enumerate() {
        if stop.is_empty() || stop.len() > MAX_STOP_SEQUENCE_BYTES {
            return Err(ApiError::invalid_param(
                format!("stop[{index}]"),
                format!("Each stop sequence must be 1 to {MAX_STOP_SEQUENCE_BYTES} bytes long."),
            ));
        }
    }
    Ok(stops)
}

fn parse_max_tokens(fields: &Fields<'_>, names: &[&str]) -> Result<Option<u32>, ApiError> {
    let mut max_tokens = None;
    for name in names {
        if let Some(value) = fields.integer(name, 1, MAX_MAX_TOKENS as i64)? {
            max_tokens = Some(value as u32);
        }
    }
    Ok(max_tokens)
}

fn parse_context_overflow(fields: &Fields<'_>) -> Result<ContextOverflow, ApiError> {
    match fields.string("context_overflow")? {
        None | Some("error") => Ok(ContextOverflow::Error),
        Some("drop_oldest_turns") => Ok(ContextOverflow::DropOldestTurns),
        Some(_) => Err(ApiError::invalid_param(
            "context_overflow",
            "'context_overflow' must be \"error\" or \"drop_oldest_turns\".",
        )),
    }
}

fn parse_response_format(fields: &Fields<'_>) -> Result<Option<OutputConstraint>, ApiError> {
    let Some(format) = fields.object("response_format")? else {
        return Ok(None);
    };
    let format_fields = Fields::new(format, "response_format.");
    match format_fields.get("type") {
        None => Err(ApiError::invalid_param(
            "response_format.type",
            "'response_format.type' is required: \"text\", \"json_object\" or \"json_schema\".",
        )
        .with_code("missing_required_parameter")),
        Some(Value::String(kind)) => match kind.as_str() {
            "text" => Ok(None),
            "json_object" => Ok(Some(OutputConstraint::JsonObject)),
            "json_schema" => {
                let Some(json_schema) = format_fields.object("json_schema")? else {
                    return Err(ApiError::invalid_param(
                        "response_format.json_schema",
                        "'response_format.json_schema' is required when the type is \"json_schema\".",
                    )
                    .with_code("missing_required_parameter"));
                };
                let schema_fields = Fields::new(json_schema, "response_format.json_schema.");
                schema_fields.string("name")?;
                schema_fields.bool("strict")?;
                match schema_fields.get("schema") {
                    None => Ok(Some(OutputConstraint::JsonObject)),
                    Some(schema @ Value::Object(_)) => {
                        // Bounded here, before anything builds a grammar from it.
                        hearth_protocol::check_json_schema(schema).map_err(|error| {
                            ApiError::invalid_param("response_format", error.to_string())
                                .with_code("invalid_response_format")
                        })?;
                        Ok(Some(OutputConstraint::JsonSchema {
                            schema: schema.clone(),
                        }))
                    }
                    Some(other) => {
                        Err(schema_fields.wrong_type("schema", "a JSON schema object", other))
                    }
                }
            }
            _ => Err(ApiError::invalid_param(
                "response_format.type",
                "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\".",
            )),
        },
        Some(other) => Err(format_fields.wrong_type("type", "a string", other)),
    }
}

#[cfg(test)]
mod tests;
