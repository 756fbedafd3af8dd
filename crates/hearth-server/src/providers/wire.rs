//! What Hearth sends to a remote OpenAI-compatible server and what it reads back: only the
//! fields every such server (vLLM, llama.cpp's server, TGI, another Hearth) understands.
//! Reading is lenient (unknown fields ignored, missing ones defaulted), since servers differ
//! in what else they send.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST {base}/chat/completions` (with `messages`) or `{base}/completions` (with `prompt`),
/// always streamed, with the usage chunk asked for.
#[derive(Debug, Serialize)]
pub struct RemoteRequest<'a> {
    pub model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<RemoteMessage<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<&'a str>,
    pub stream: bool,
    pub stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    pub temperature: f32,
    pub top_p: f32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(skip_serializing_if = "is_zero")]
    pub presence_penalty: f32,
    #[serde(skip_serializing_if = "is_zero")]
    pub frequency_penalty: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<RemoteResponseFormat<'a>>,
    /// Sent only when asked for: llama.cpp's server, vLLM and Hearth take it, others ignore it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_eos: bool,
}

fn is_zero(value: &f32) -> bool {
    *value == 0.0
}

#[derive(Debug, Serialize)]
pub struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Debug, Serialize)]
pub struct RemoteMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

/// OpenAI's `response_format`: a JSON object, or JSON matching a schema.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RemoteResponseFormat<'a> {
    JsonObject,
    JsonSchema { json_schema: RemoteJsonSchema<'a> },
}

#[derive(Debug, Serialize)]
pub struct RemoteJsonSchema<'a> {
    pub name: &'static str,
    pub schema: &'a Value,
    pub strict: bool,
}

/// One `data:` line of the remote's stream.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoteChunk {
    pub choices: Vec<RemoteChoice>,
    pub usage: Option<RemoteUsage>,
    /// A failure after the remote's 200 (OpenAI's and Hearth's error event).
    pub error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoteChoice {
    /// Chat completions.
    pub delta: Option<RemoteDelta>,
    /// Legacy completions.
    pub text: Option<String>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoteDelta {
    pub content: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct RemoteUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// `GET {base}/models`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoteModelList {
    pub data: Vec<RemoteModel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoteModel {
    pub id: String,
    pub created: Option<u64>,
}

/// The message of a remote's error body, whatever its shape: OpenAI's `{"error": {"message"}}`,
/// TGI's `{"error": "..."}`, vLLM's `{"message": "..."}`.
pub fn remote_error_message(body: &Value) -> Option<String> {
    let error = body.get("error").unwrap_or(body);
    match error {
        Value::String(message) => Some(message.clone()),
        Value::Object(object) => object
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}
