//! Ollama's request bodies (`/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`),
//! read field by field like the OpenAI ones, so a wrong type or range is a 400 naming the
//! field (`options.temperature`). `options` maps to Hearth's sampling: `temperature`,
//! `top_p`, `top_k`, `min_p`, `seed`, `num_predict`, `stop`, `repeat_penalty`,
//! `repeat_last_n`, `presence_penalty`, `frequency_penalty`. Options that set up a model load
//! in Ollama (`num_ctx`, `num_gpu`, `num_thread`, …) or samplers Hearth does not have
//! (`mirostat`, `tfs_z`, `typical_p`) are ignored, as Ollama ignores options it does not know.

use hearth_protocol::{
    ChatMessage, ContextOverflow, EmbeddingInput, OutputConstraint, Prompt, Role, SamplingParams,
};
use hearth_supervisor::Generation;
use serde_json::{Map, Value};

use super::embeddings::parse_embedding_input;
use super::fields::{as_object, type_name, Fields};
use super::{check_model_name, fold_seed, parse_stop, MAX_MAX_TOKENS, PENALTY_RANGE};
use crate::error::ApiError;
use crate::models::KeepAlive;

/// The highest `temperature` accepted (Ollama sets no bound; past this the text is noise).
const MAX_TEMPERATURE: f64 = 5.0;

/// A validated `/api/chat` or `/api/generate` request.
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaGeneration {
    pub model: String,
    /// `None`: `/api/generate` with an empty prompt, which only loads (or unloads) the model.
    pub prompt: Option<Prompt>,
    pub sampling: SamplingParams,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub constraint: Option<OutputConstraint>,
    /// Streamed as NDJSON unless `stream` is false (Ollama's default is to stream).
    pub stream: bool,
    pub keep_alive: Option<KeepAlive>,
    /// `think: false` turns a reasoning model's thinking off (the text is not split on this
    /// API: what it thinks stays inline, tags and all).
    pub enable_thinking: bool,
}

impl OllamaGeneration {
    /// The generation to hand to the supervisor (a chat keeps its newest turns that fit).
    pub fn generation(&self, prompt: Prompt) -> Generation {
        Generation {
            prompt,
            sampling: self.sampling.clone(),
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            ignore_eos: false,
            constraint: self.constraint.clone(),
            logprobs: None,
            context_overflow: ContextOverflow::Error,
            tools: Vec::new(),
            enable_thinking: self.enable_thinking && self.constraint.is_none(),
            speculate: true,
        }
    }
}

/// A validated `/api/embed` (or `/api/embeddings`) request.
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaEmbed {
    pub model: String,
    pub inputs: Vec<EmbeddingInput>,
    pub dimensions: Option<u32>,
    pub keep_alive: Option<KeepAlive>,
}

/// The model an Ollama request names (`model`, or the older `name`).
pub fn parse_ollama_model(body: &Value) -> Result<String, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let name = if fields.get("model").is_some() {
        "model"
    } else {
        "name"
    };
    match fields.get(name) {
        None => Err(ApiError::invalid_param("model", "'model' is required.")
            .with_code("missing_required_parameter")),
        Some(Value::String(model)) => {
            check_model_name(model)?;
            Ok(model.clone())
        }
        Some(other) => Err(fields.wrong_type(name, "a string", other)),
    }
}

/// Parses a `/api/chat` body. `tools` are refused: Hearth's tool calling is not wired to
/// this endpoint yet.
pub fn parse_ollama_chat(body: &Value) -> Result<OllamaGeneration, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let model = parse_ollama_model(body)?;
    fields.unsupported_unless_empty("tools", "'tools' on /api/chat")?;
    let Some(messages) = fields.get("messages") else {
        return Err(
            ApiError::invalid_param("messages", "'messages' is required.")
                .with_code("missing_required_parameter"),
        );
    };
    let Value::Array(items) = messages else {
        return Err(fields.wrong_type("messages", "an array of messages", messages));
    };
    if items.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "'messages' must hold at least one message.",
        ));
    }
    hearth_protocol::check_message_count(items.len())
        .map_err(|message| ApiError::invalid_param("messages", message))?;
    let messages = items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_message(item, index))
        .collect::<Result<Vec<_>, _>>()?;
    let mut generation = parse_common(&fields, model)?;
    generation.prompt = Some(Prompt::Chat { messages });
    Ok(generation)
}

/// Parses a `/api/generate` body: `prompt` with the model's template (and `system`), or as
/// is with `raw`; an empty prompt only loads the model.
pub fn parse_ollama_generate(body: &Value) -> Result<OllamaGeneration, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let model = parse_ollama_model(body)?;
    let prompt = fields.string("prompt")?.unwrap_or_default();
    let system = fields.string("system")?.unwrap_or_default();
    let raw = fields.bool("raw")?.unwrap_or(false);
    fields.unsupported_unless_empty("images", "'images' (image input)")?;
    fields.unsupported_unless_empty("suffix", "'suffix' (fill-in-the-middle)")?;
    if fields
        .string("template")?
        .is_some_and(|template| !template.is_empty())
    {
        return Err(ApiError::invalid_param(
            "template",
            "'template' is not supported: Hearth uses the model's own chat template (or none, with 'raw').",
        )
        .with_code("unsupported_parameter"));
    }
    let mut generation = parse_common(&fields, model)?;
    generation.prompt = if prompt.is_empty() {
        None
    } else if raw {
        Some(Prompt::Text {
            text: prompt.to_string(),
        })
    } else {
        let mut messages = Vec::new();
        if !system.is_empty() {
            messages.push(ChatMessage::new(Role::System, system));
        }
        messages.push(ChatMessage::new(Role::User, prompt));
        Some(Prompt::Chat { messages })
    };
    Ok(generation)
}

/// Parses `/api/embed` (`input`: a string or strings) or, with `legacy`, `/api/embeddings`
/// (`prompt`: one string).
pub fn parse_ollama_embed(body: &Value, legacy: bool) -> Result<OllamaEmbed, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let model = parse_ollama_model(body)?;
    let inputs = parse_embedding_input(&fields, if legacy { "prompt" } else { "input" })?;
    let dimensions = fields
        .integer("dimensions", 1, i64::from(u32::MAX))?
        .map(|dimensions| dimensions as u32);
    fields.bool("truncate")?;
    if let Some(options) = fields.object("options")? {
        parse_options(options)?;
    }
    Ok(OllamaEmbed {
        model,
        inputs,
        dimensions,
        keep_alive: parse_keep_alive(&fields)?,
    })
}

fn parse_message(item: &Value, index: usize) -> Result<ChatMessage, ApiError> {
    let prefix = format!("messages[{index}].");
    let Value::Object(map) = item else {
        return Err(ApiError::invalid_param(
            format!("messages[{index}]"),
            format!(
                "'messages[{index}]' must be an object, got {}.",
                type_name(item)
            ),
        )
        .with_code("invalid_type"));
    };
    let fields = Fields::new(map, prefix.clone());
    let role = match fields.string("role")? {
        Some("system") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => {
            return Err(ApiError::invalid_param(
                format!("{prefix}role"),
                "Tool messages are not supported on /api/chat yet.",
            )
            .with_code("unsupported_value"))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                format!("{prefix}role"),
                format!("'{prefix}role' must be \"system\", \"user\" or \"assistant\"."),
            ))
        }
        None => {
            return Err(ApiError::invalid_param(
                format!("{prefix}role"),
                format!("'{prefix}role' is required."),
            )
            .with_code("missing_required_parameter"))
        }
    };
    fields.unsupported_unless_empty("images", "'images' (image input)")?;
    fields.unsupported_unless_empty("tool_calls", "'tool_calls' on /api/chat")?;
    let content = fields.string("content")?.unwrap_or_default();
    Ok(ChatMessage::new(role, content))
}

/// `format`, `options`, `stream` and `keep_alive`, shared by chat and generate.
fn parse_common(fields: &Fields<'_>, model: String) -> Result<OllamaGeneration, ApiError> {
    let constraint = match fields.get("format") {
        None => None,
        Some(Value::String(format)) if format.is_empty() => None,
        Some(Value::String(format)) if format == "json" => Some(OutputConstraint::JsonObject),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid_param(
                "format",
                "'format' must be \"json\" or a JSON schema object.",
            ))
        }
        Some(schema @ Value::Object(_)) => {
            hearth_protocol::check_json_schema(schema).map_err(|error| {
                ApiError::invalid_param("format", error.to_string())
                    .with_code("invalid_response_format")
            })?;
            Some(OutputConstraint::JsonSchema {
                schema: schema.clone(),
            })
        }
        Some(other) => {
            return Err(fields.wrong_type("format", "\"json\" or a JSON schema object", other))
        }
    };
    let options = match fields.object("options")? {
        Some(options) => parse_options(options)?,
        None => SamplingOptions::default(),
    };
    let enable_thinking = fields.bool("think")?.unwrap_or(true);
    Ok(OllamaGeneration {
        model,
        prompt: None,
        sampling: options.sampling,
        max_tokens: options.max_tokens,
        stop: options.stop,
        constraint,
        stream: fields.bool("stream")?.unwrap_or(true),
        keep_alive: parse_keep_alive(fields)?,
        enable_thinking,
    })
}

fn parse_keep_alive(fields: &Fields<'_>) -> Result<Option<KeepAlive>, ApiError> {
    let parsed = match fields.get("keep_alive") {
        None => return Ok(None),
        Some(Value::String(text)) => KeepAlive::parse(text),
        Some(Value::Number(number)) => KeepAlive::from_seconds(number.as_f64().unwrap_or(f64::NAN)),
        Some(other) => {
            return Err(fields.wrong_type("keep_alive", "a duration (\"5m\") or seconds", other))
        }
    };
    parsed
        .map(Some)
        .map_err(|why| ApiError::invalid_param("keep_alive", format!("'keep_alive': {why}.")))
}

#[derive(Debug, Default)]
struct SamplingOptions {
    sampling: SamplingParams,
    max_tokens: Option<u32>,
    stop: Vec<String>,
}

/// `options`, mapped to Hearth's sampling.
fn parse_options(options: &Map<String, Value>) -> Result<SamplingOptions, ApiError> {
    let fields = Fields::new(options, "options.");
    let mut sampling = SamplingParams::default();
    if let Some(temperature) = fields.number("temperature", (0.0, MAX_TEMPERATURE))? {
        sampling.temperature = temperature as f32;
    }
    if let Some(top_p) = fields.number("top_p", (0.0, 1.0))? {
        sampling.top_p = top_p as f32;
    }
    if let Some(top_k) = fields.integer("top_k", 0, i64::from(i32::MAX))? {
        sampling.top_k = top_k as i32;
    }
    if let Some(min_p) = fields.number("min_p", (0.0, 1.0))? {
        sampling.min_p = min_p as f32;
    }
    if let Some(penalty) = fields.number("repeat_penalty", (f64::MIN_POSITIVE, 10.0))? {
        sampling.repeat_penalty = penalty as f32;
    }
    if let Some(last_n) = fields.integer("repeat_last_n", -1, i64::from(i32::MAX))? {
        sampling.repeat_last_n = last_n as i32;
    }
    if let Some(presence) = fields.number("presence_penalty", PENALTY_RANGE)? {
        sampling.presence_penalty = presence as f32;
    }
    if let Some(frequency) = fields.number("frequency_penalty", PENALTY_RANGE)? {
        sampling.frequency_penalty = frequency as f32;
    }
    // Ollama's -1 (any seed) draws one per request, as no seed does.
    if let Some(seed) = fields.integer("seed", i64::MIN, i64::MAX)? {
        sampling.seed = (seed >= 0).then(|| fold_seed(seed));
    }
    // -1: until the end of generation; -2: until the context is full; both are no limit here.
    let max_tokens = match fields.integer("num_predict", -2, MAX_MAX_TOKENS as i64)? {
        None | Some(-1) | Some(-2) => None,
        Some(0) => {
            return Err(ApiError::invalid_param(
                "options.num_predict",
                "'options.num_predict' must be -1, -2 or at least 1.",
            ))
        }
        Some(count) => Some(count as u32),
    };
    Ok(SamplingOptions {
        sampling,
        max_tokens,
        stop: parse_stop(&fields)?,
    })
}
