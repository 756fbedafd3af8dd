//! Ollama's wire shapes, as its API documentation and its official clients (the `ollama`
//! Python package) read them. Durations are nanoseconds, times RFC 3339; streamed answers
//! are one of these objects per line (NDJSON).

use serde::Serialize;

/// `GET /api/version`.
#[derive(Debug, Serialize)]
pub struct Version {
    pub version: &'static str,
}

/// `{"error": "..."}`, Ollama's error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
}

/// A model's details, as `/api/tags`, `/api/show` and `/api/ps` give them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelDetails {
    pub parent_model: String,
    pub format: &'static str,
    pub family: String,
    pub families: Vec<String>,
    pub parameter_size: String,
    pub quantization_level: String,
}

/// One model of `/api/tags`.
#[derive(Debug, Serialize)]
pub struct TagModel {
    pub name: String,
    pub model: String,
    pub modified_at: String,
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
}

/// `GET /api/tags`.
#[derive(Debug, Serialize)]
pub struct Tags {
    pub models: Vec<TagModel>,
}

/// One loaded model of `/api/ps`.
#[derive(Debug, Serialize)]
pub struct RunningModel {
    pub name: String,
    pub model: String,
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
    /// When it will be unloaded if unused (far in the future when never).
    pub expires_at: String,
    pub size_vram: u64,
    pub context_length: u32,
}

/// `GET /api/ps`.
#[derive(Debug, Serialize)]
pub struct Running {
    pub models: Vec<RunningModel>,
}

/// `POST /api/show`'s `model_info`: the GGUF keys Ollama clients read most.
#[derive(Debug, Serialize)]
pub struct ShowModelInfo {
    #[serde(rename = "general.architecture")]
    pub architecture: String,
    #[serde(rename = "general.parameter_count")]
    pub parameter_count: u64,
    /// `{arch}.context_length` and `{arch}.embedding_length`, under the architecture's name.
    #[serde(flatten)]
    pub lengths: std::collections::BTreeMap<String, u64>,
}

/// `POST /api/show`.
#[derive(Debug, Serialize)]
pub struct Show {
    pub modelfile: String,
    pub parameters: String,
    pub template: String,
    pub details: ModelDetails,
    pub model_info: ShowModelInfo,
    pub capabilities: Vec<&'static str>,
    pub modified_at: String,
}

/// A chat message of `/api/chat`'s answer.
#[derive(Debug, Serialize)]
pub struct AnswerMessage {
    pub role: &'static str,
    pub content: String,
}

/// The timings every last line (or whole answer) of `/api/chat` and `/api/generate` carries.
#[derive(Debug, Default, Serialize)]
pub struct Timings {
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: u32,
    pub prompt_eval_duration: u64,
    pub eval_count: u32,
    pub eval_duration: u64,
}

/// One line of `/api/chat` or `/api/generate` (or the whole answer): `done` is false until
/// the last line, which has `done_reason` and the timings.
#[derive(Debug, Serialize)]
pub struct AnswerLine {
    pub model: String,
    pub created_at: String,
    /// `message` for chat, `response` for generate.
    #[serde(flatten)]
    pub text: AnswerText,
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
}

/// Where a line carries its text.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerText {
    Message(AnswerMessage),
    Response(String),
}

/// `POST /api/embed`.
#[derive(Debug, Serialize)]
pub struct EmbedAnswer {
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: u32,
}

/// `POST /api/embeddings` (the older endpoint): one vector.
#[derive(Debug, Serialize)]
pub struct LegacyEmbedAnswer {
    pub embedding: Vec<f32>,
}

/// One line of `/api/pull`'s progress.
#[derive(Debug, Default, Serialize)]
pub struct PullProgress {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
}
