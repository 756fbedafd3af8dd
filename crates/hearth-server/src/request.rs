//! Parsing and validation of the OpenAI request bodies, field by field.
//!
//! Bodies are read as `serde_json::Value` and checked one field at a time rather than through
//! derived structs, so that every failure names its field in `param` (as OpenAI does:
//! `messages[2].content`, `response_format.type`) with a message that says what was expected.
//! Unknown fields are ignored, as llama.cpp's and LM Studio's servers do, so clients that send
//! extras (`user`, `metadata`, `cache_prompt`) keep working. A few llama.cpp-style extensions
//! are understood: `top_k`, `min_p`, `repeat_penalty`, `ignore_eos`, and Hearth's
//! `context_overflow` (`"error"` or `"drop_oldest_turns"`).

use hearth_protocol::{
    ChatMessage, ContextOverflow, OutputConstraint, Prompt, Role, SamplingParams, MAX_TOP_LOGPROBS,
};
use hearth_supervisor::Generation;
use serde_json::{Map, Value};

use crate::error::ApiError;

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
        }
    }
}

/// A JSON object's fields, read with errors that name the field.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// Prefix of `param` names (`messages[0].` for a message's fields).
    prefix: String,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self {
            map,
            prefix: prefix.into(),
        }
    }

    fn param(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The field's value; `null` counts as absent (clients send `null` for "default").
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|value| !value.is_null())
    }

    fn wrong_type(&self, name: &str, expected: &str, value: &Value) -> ApiError {
        ApiError::invalid_param(
            self.param(name),
            format!(
                "'{}' must be {expected}, got {}.",
                self.param(name),
                type_name(value)
            ),
        )
        .with_code("invalid_type")
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(other) => Err(self.wrong_type(name, "a boolean", other)),
        }
    }

    fn string(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value)),
            Some(other) => Err(self.wrong_type(name, "a string", other)),
        }
    }

    /// A finite number within `[min, max]`.
    fn number(&self, name: &str, (min, max): (f64, f64)) -> Result<Option<f64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let Some(number) = value.as_f64() else {
            return Err(self.wrong_type(name, "a number", value));
        };
        if !number.is_finite() || number < min || number > max {
            return Err(ApiError::invalid_param(
                self.param(name),
                format!(
                    "'{}' must be between {min} and {max}, got {number}.",
                    self.param(name)
                ),
            ));
        }
        Ok(Some(number))
    }

    /// An integer within `[min, max]` (an integral float such as `16.0` is accepted).
    fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let integer = match value {
            Value::Number(number) => number.as_i64().or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            }),
            _ => None,
        };
        let out_of_range = || {
            ApiError::invalid_param(
                self.param(name),
                format!(
                    "'{}' must be an integer between {min} and {max}, got {value}.",
                    self.param(name)
                ),
            )
        };
        match integer {
            Some(integer) if (min..=max).contains(&integer) => Ok(Some(integer)),
            Some(_) => Err(out_of_range()),
            None if value.is_number() => Err(out_of_range()),
            None => Err(self.wrong_type(name, "an integer", value)),
        }
    }

    fn object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(self.wrong_type(name, "an object", other)),
        }
    }

    /// Refuses a feature Hearth does not have when the field is present and not empty.
    fn unsupported_unless_empty(&self, name: &str, what: &str) -> Result<(), ApiError> {
        let empty = match self.get(name) {
            None => true,
            Some(Value::Array(items)) => items.is_empty(),
            Some(Value::Object(map)) => map.is_empty(),
            Some(_) => false,
        };
        if empty {
            Ok(())
        } else {
            Err(ApiError::invalid_param(
                self.param(name),
                format!("{what} is not supported by Hearth."),
            )
            .with_code("unsupported_parameter"))
        }
    }
}

/// The body must be a JSON object.
fn as_object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "The request body must be a JSON object, got {}.",
                type_name(body)
            ),
        )
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
    let model = match fields.get("model") {
        None => {
            return Err(ApiError::invalid_param(
                "model",
                "'model' is required: the id of a model from GET /v1/models.",
            )
            .with_code("missing_required_parameter"))
        }
        Some(Value::String(model)) if model.trim().is_empty() => {
            return Err(ApiError::invalid_param(
                "model",
                "'model' must not be empty.",
            ))
        }
        Some(Value::String(model)) => model.clone(),
        Some(other) => return Err(fields.wrong_type("model", "a string", other)),
    };

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
                    Some(schema @ Value::Object(_)) => Ok(Some(OutputConstraint::JsonSchema {
                        schema: schema.clone(),
                    })),
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

/// Parses and validates a `POST /v1/chat/completions` body.
pub fn parse_chat_request(body: &Value) -> Result<CompletionRequest, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let common = parse_common(&fields)?;
    let messages = parse_messages(&fields)?;
    let max_tokens = parse_max_tokens(&fields, &["max_tokens", "max_completion_tokens"])?;
    fields.unsupported_unless_empty("tools", "Tool calling")?;
    fields.unsupported_unless_empty("functions", "Function calling")?;
    if let Some(Value::String(choice)) = fields.get("tool_choice") {
        if choice != "none" && choice != "auto" {
            return Err(ApiError::invalid_param(
                "tool_choice",
                "Tool calling is not supported by Hearth.",
            )
            .with_code("unsupported_parameter"));
        }
    }
    let logprobs = match fields.bool("logprobs")? {
        Some(true) => Some(
            fields
                .integer("top_logprobs", 0, i64::from(MAX_TOP_LOGPROBS))?
                .unwrap_or(0) as u32,
        ),
        _ => {
            if fields.get("top_logprobs").is_some() {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    "'top_logprobs' needs 'logprobs' set to true.",
                ));
            }
            None
        }
    };
    Ok(CompletionRequest {
        endpoint: Endpoint::ChatCompletions,
        model: common.model,
        prompt: Prompt::Chat { messages },
        sampling: common.sampling,
        max_tokens,
        stop: common.stop,
        stream: common.stream,
        include_usage: common.include_usage,
        constraint: parse_response_format(&fields)?,
        logprobs,
        ignore_eos: common.ignore_eos,
        context_overflow: parse_context_overflow(&fields)?,
        echo: false,
    })
}

fn parse_messages(fields: &Fields<'_>) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match fields.get("messages") {
        None => {
            return Err(ApiError::invalid_param(
                "messages",
                "'messages' is required: an array of {role, content} objects.",
            )
            .with_code("missing_required_parameter"))
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(fields.wrong_type("messages", "an array", other)),
    };
    if items.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "'messages' must contain at least one message.",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_message(index, item))
        .collect()
}

fn parse_message(index: usize, item: &Value) -> Result<ChatMessage, ApiError> {
    let prefix = format!("messages[{index}]");
    let Some(map) = item.as_object() else {
        return Err(ApiError::invalid_param(
            prefix.clone(),
            format!("'{prefix}' must be an object, got {}.", type_name(item)),
        )
        .with_code("invalid_type"));
    };
    let fields = Fields::new(map, format!("{prefix}."));
    let role = match fields.string("role")? {
        None => {
            return Err(ApiError::invalid_param(
                fields.param("role"),
                format!("'{prefix}.role' is required."),
            )
            .with_code("missing_required_parameter"))
        }
        // `developer` is the newer name of `system`.
        Some("system") | Some("developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") | Some("function") => {
            return Err(ApiError::invalid_param(
                fields.param("role"),
                "Tool and function messages are not supported by Hearth.",
            )
            .with_code("unsupported_value"))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                fields.param("role"),
                format!(
                    "'{prefix}.role' must be \"system\", \"developer\", \"user\" or \"assistant\"."
                ),
            ))
        }
    };
    fields.string("name")?;
    if role == Role::Assistant {
        fields.unsupported_unless_empty("tool_calls", "Tool calling")?;
    }
    let content = match fields.get("content") {
        None if role == Role::Assistant => String::new(),
        None => {
            return Err(ApiError::invalid_param(
                fields.param("content"),
                format!("'{prefix}.content' is required."),
            )
            .with_code("missing_required_parameter"))
        }
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parse_content_parts(&prefix, parts)?,
        Some(other) => {
            return Err(fields.wrong_type("content", "a string or an array of text parts", other))
        }
    };
    Ok(ChatMessage { role, content })
}

/// Text parts are joined with newlines; other parts (images, audio, files) are refused.
fn parse_content_parts(prefix: &str, parts: &[Value]) -> Result<String, ApiError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let param = format!("{prefix}.content[{index}]");
        let Some(map) = part.as_object() else {
            return Err(ApiError::invalid_param(
                param.clone(),
                format!("'{param}' must be an object, got {}.", type_name(part)),
            )
            .with_code("invalid_type"));
        };
        let fields = Fields::new(map, format!("{param}."));
        match fields.string("type")? {
            Some("text") => match fields.string("text")? {
                Some(text) => texts.push(text),
                None => {
                    return Err(ApiError::invalid_param(
                        fields.param("text"),
                        format!("'{param}.text' is required."),
                    )
                    .with_code("missing_required_parameter"))
                }
            },
            Some("image_url") | Some("input_audio") | Some("file") => {
                return Err(ApiError::invalid_param(
                    fields.param("type"),
                    "Only text content is supported: this model takes no images, audio or files.",
                )
                .with_code("unsupported_value"))
            }
            _ => {
                return Err(ApiError::invalid_param(
                    fields.param("type"),
                    format!("'{param}.type' must be \"text\"."),
                ))
            }
        }
    }
    Ok(texts.join("\n"))
}

/// Parses and validates a `POST /v1/completions` body.
pub fn parse_completion_request(body: &Value) -> Result<CompletionRequest, ApiError> {
    let fields = Fields::new(as_object(body)?, "");
    let common = parse_common(&fields)?;
    let prompt = parse_prompt(&fields)?;
    let max_tokens =
        parse_max_tokens(&fields, &["max_tokens"])?.or(Some(DEFAULT_COMPLETION_MAX_TOKENS));
    let logprobs = fields
        .integer("logprobs", 0, MAX_COMPLETION_LOGPROBS as i64)?
        .map(|count| count as u32);
    let echo = fields.bool("echo")?.unwrap_or(false);
    if echo && matches!(prompt, Prompt::Tokens { .. }) {
        return Err(ApiError::invalid_param(
            "echo",
            "'echo' needs a text prompt, not token ids.",
        ));
    }
    if fields
        .string("suffix")?
        .is_some_and(|suffix| !suffix.is_empty())
    {
        return Err(ApiError::invalid_param(
            "suffix",
            "'suffix' (fill-in-the-middle) is not supported.",
        )
        .with_code("unsupported_parameter"));
    }
    if fields
        .integer("best_of", 1, i64::MAX)?
        .is_some_and(|best_of| best_of != 1)
    {
        return Err(
            ApiError::invalid_param("best_of", "Only best_of=1 is supported.")
                .with_code("unsupported_value"),
        );
    }
    Ok(CompletionRequest {
        endpoint: Endpoint::Completions,
        model: common.model,
        prompt,
        sampling: common.sampling,
        max_tokens,
        stop: common.stop,
        stream: common.stream,
        include_usage: common.include_usage,
        constraint: parse_response_format(&fields)?,
        logprobs,
        ignore_eos: common.ignore_eos,
        context_overflow: ContextOverflow::Error,
        echo,
    })
}

/// A prompt is a string, an array with one string, or token ids (an array of integers, or an
/// array with one such array). Several prompts in one request are refused (like n > 1).
fn parse_prompt(fields: &Fields<'_>) -> Result<Prompt, ApiError> {
    let several = || {
        ApiError::invalid_param(
            "prompt",
            "Only one prompt per request is supported: send several requests.",
        )
        .with_code("unsupported_value")
    };
    let prompt = match fields.get("prompt") {
        None => {
            return Err(ApiError::invalid_param("prompt", "'prompt' is required.")
                .with_code("missing_required_parameter"))
        }
        Some(Value::String(text)) => Prompt::Text { text: text.clone() },
        Some(Value::Array(items)) => match items.as_slice() {
            [] => {
                return Err(ApiError::invalid_param(
                    "prompt",
                    "'prompt' must not be empty.",
                ))
            }
            [Value::String(text)] => Prompt::Text { text: text.clone() },
            [Value::Array(tokens)] => Prompt::Tokens {
                tokens: parse_tokens(tokens, "prompt[0]")?,
            },
            items if items.iter().all(Value::is_number) => Prompt::Tokens {
                tokens: parse_tokens(items, "prompt")?,
            },
            items if items.iter().all(|i| i.is_string() || i.is_array()) => return Err(several()),
            _ => {
                return Err(fields.wrong_type(
                    "prompt",
                    "a string, an array of strings or an array of token ids",
                    &Value::Array(items.clone()),
                ))
            }
        },
        Some(other) => return Err(fields.wrong_type("prompt", "a string", other)),
    };
    let empty = match &prompt {
        Prompt::Text { text } => text.is_empty(),
        Prompt::Tokens { tokens } => tokens.is_empty(),
        Prompt::Chat { messages } => messages.is_empty(),
    };
    if empty {
        return Err(ApiError::invalid_param(
            "prompt",
            "'prompt' must not be empty.",
        ));
    }
    Ok(prompt)
}

fn parse_tokens(items: &[Value], param: &str) -> Result<Vec<i32>, ApiError> {
    items
        .iter()
        .map(|item| {
            item.as_i64()
                .and_then(|token| i32::try_from(token).ok())
                .filter(|token| *token >= 0)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        param,
                        format!(
                            "'{param}' token ids must be integers from 0 to {}.",
                            i32::MAX
                        ),
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(extra: Value) -> Value {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                body.insert(key.clone(), value.clone());
            }
        }
        body
    }

    fn param_of(body: Value) -> String {
        parse_chat_request(&body)
            .expect_err("should be refused")
            .param
            .unwrap_or_default()
    }

    #[test]
    fn a_minimal_chat_request_parses_with_defaults() {
        let request = parse_chat_request(&chat(json!({}))).unwrap();
        assert_eq!(request.model, "m");
        assert!(!request.stream);
        assert_eq!(request.max_tokens, None);
        assert_eq!(request.sampling, SamplingParams::default());
        let Prompt::Chat { messages } = &request.prompt else {
            panic!("not a chat")
        };
        assert_eq!(messages[0], ChatMessage::new(Role::User, "hi"));
    }

    #[test]
    fn every_openai_field_is_read() {
        let request = parse_chat_request(&chat(json!({
            "temperature": 0.5, "top_p": 0.9, "max_completion_tokens": 7, "stop": "\n",
            "seed": 42, "presence_penalty": 0.1, "frequency_penalty": -0.2, "stream": true,
            "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 3,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "n": 1, "user": "ignored", "top_k": 5, "min_p": 0.1
        })))
        .unwrap();
        assert_eq!(request.sampling.temperature, 0.5);
        assert_eq!(request.sampling.top_p, 0.9);
        assert_eq!(request.sampling.top_k, 5);
        assert_eq!(request.sampling.seed, Some(42));
        assert_eq!(request.max_tokens, Some(7));
        assert_eq!(request.stop, vec!["\n".to_string()]);
        assert!(request.stream && request.include_usage);
        assert_eq!(request.logprobs, Some(3));
        assert!(matches!(
            request.constraint,
            Some(OutputConstraint::JsonSchema { .. })
        ));
    }

    #[test]
    fn content_parts_and_developer_messages_are_understood() {
        let request = parse_chat_request(&json!({"model": "m", "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null}
        ]}))
        .unwrap();
        let Prompt::Chat { messages } = request.prompt else {
            panic!()
        };
        assert_eq!(messages[0].role, Role::System);
        assert_eq!(messages[1].content, "a\nb");
        assert_eq!(messages[2].content, "");
    }

    #[test]
    fn invalid_fields_are_named_in_param() {
        assert_eq!(param_of(chat(json!({"n": 2}))), "n");
        assert_eq!(param_of(chat(json!({"temperature": "hot"}))), "temperature");
        assert_eq!(param_of(chat(json!({"temperature": 3}))), "temperature");
        assert_eq!(param_of(chat(json!({"max_tokens": -1}))), "max_tokens");
        assert_eq!(param_of(chat(json!({"max_tokens": 1e30}))), "max_tokens");
        assert_eq!(param_of(chat(json!({"max_tokens": 0}))), "max_tokens");
        assert_eq!(param_of(chat(json!({"stop": 5}))), "stop");
        assert_eq!(param_of(chat(json!({"stop": ["a", 1]}))), "stop[1]");
        assert_eq!(param_of(chat(json!({"seed": 1.5}))), "seed");
        assert_eq!(
            param_of(chat(json!({"response_format": {"type": "xml"}}))),
            "response_format.type"
        );
        assert_eq!(
            param_of(chat(json!({"response_format": {"type": "json_schema"}}))),
            "response_format.json_schema"
        );
        assert_eq!(param_of(chat(json!({"top_logprobs": 2}))), "top_logprobs");
        assert_eq!(
            param_of(chat(json!({"logprobs": true, "top_logprobs": 21}))),
            "top_logprobs"
        );
        assert_eq!(
            param_of(chat(json!({"stream_options": {}}))),
            "stream_options"
        );
        assert_eq!(param_of(json!({"messages": []})), "model");
        assert_eq!(param_of(json!({"model": "m", "messages": []})), "messages");
        assert_eq!(param_of(json!({"model": "m"})), "messages");
        assert_eq!(
            param_of(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]})),
            "messages[0].role"
        );
        assert_eq!(
            param_of(json!({"model": "m", "messages": [{"role": "user", "content": 5}]})),
            "messages[0].content"
        );
        assert_eq!(
            param_of(
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})
            ),
            "messages[0].content[0].type"
        );
        assert_eq!(
            param_of(chat(json!({"tools": [{"type": "function"}]}))),
            "tools"
        );
        assert_eq!(
            param_of(chat(json!({"logit_bias": {"1": 5}}))),
            "logit_bias"
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        let error = parse_chat_request(&json!([1, 2])).unwrap_err();
        assert_eq!(error.code, Some("invalid_json"));
    }

    #[test]
    fn completion_prompts_take_every_openai_shape() {
        let text = parse_completion_request(&json!({"model": "m", "prompt": "Once"})).unwrap();
        assert_eq!(
            text.prompt,
            Prompt::Text {
                text: "Once".into()
            }
        );
        assert_eq!(text.max_tokens, Some(DEFAULT_COMPLETION_MAX_TOKENS));
        let tokens = parse_completion_request(&json!({"model": "m", "prompt": [1, 2, 3]})).unwrap();
        assert_eq!(
            tokens.prompt,
            Prompt::Tokens {
                tokens: vec![1, 2, 3]
            }
        );
        let error =
            parse_completion_request(&json!({"model": "m", "prompt": ["a", "b"]})).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("prompt"));
        let error = parse_completion_request(&json!({"model": "m", "prompt": ""})).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("prompt"));
        let error = parse_completion_request(&json!({"model": "m", "prompt": "x", "logprobs": 6}))
            .unwrap_err();
        assert_eq!(error.param.as_deref(), Some("logprobs"));
    }

    #[test]
    fn seeds_keep_their_high_bits() {
        assert_ne!(fold_seed(1), fold_seed(1 + (1 << 32)));
        assert_eq!(fold_seed(42), 42);
    }
}
