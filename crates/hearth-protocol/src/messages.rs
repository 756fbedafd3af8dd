//! The request and event types of the worker protocol: [`WorkerRequest`] and [`WorkerEvent`],
//! with what a load answers ([`ModelInfo`]), errors, and memory reports. What a load and a
//! generation ask for are in `load_params.rs` and `generate.rs`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::{
    BackendReport, ChatMessage, DraftVerdict, EmbedRequest, FlashAttention, GenerateRequest,
    KvCacheType, LoadParams, RequestMetrics, SpeculativeMode, ThinkingSyntax, TokenLogprob,
};

/// Messages from the supervisor to the worker (one JSON object per line on stdin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerRequest {
    /// Load a model, replacing the one loaded (answered by `Loaded` or `Error`).
    Load {
        request_id: u64,
        model_path: PathBuf,
        #[serde(default)]
        params: LoadParams,
    },
    Generate(GenerateRequest),
    /// Embeds texts (`Embedding` events, then `Embedded`); cancelled like a generation.
    Embed(EmbedRequest),
    /// Stop a request wherever it is (queued, prefilling or decoding).
    Cancel {
        request_id: u64,
    },
    /// Turn text into token ids with the loaded model's tokenizer.
    Tokenize {
        request_id: u64,
        text: String,
        #[serde(default)]
        add_special: bool,
    },
    /// Render chat messages with the model's template and count the prompt's tokens, without
    /// generating (answered by `Rendered`).
    RenderChat {
        request_id: u64,
        messages: Vec<ChatMessage>,
    },
    /// Ask for the scheduler's current load (answered by `Stats`).
    Stats {
        request_id: u64,
    },
    /// Ask what llama.cpp allocated for the loaded model and context (answered by `Memory`).
    MemoryReport {
        request_id: u64,
    },
    /// Ask which devices llama.cpp's backends offer, with their memory (answered by
    /// `Devices`; needs no model).
    Devices {
        request_id: u64,
    },
    /// Finish the step in progress and exit (closing stdin does the same).
    Shutdown,
}

/// Where the prompt text of a chat came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSource {
    /// The model's template, recognised by llama.cpp's built-in template engine.
    Builtin,
    /// The model's Jinja template, rendered by minijinja in a sandbox.
    Jinja,
    /// The model has no template: ChatML was used instead (reported, never silent).
    FallbackChatml,
}

/// What a loaded model is, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The file name (never the full path: it may hold a user name).
    pub file_name: String,
    pub architecture: String,
    pub n_params: u64,
    pub size_bytes: u64,
    pub n_vocab: i32,
    pub n_layer: u32,
    /// The length of the model's embeddings (`/v1/embeddings`' vectors).
    #[serde(default)]
    pub n_embd: u32,
    pub n_ctx_train: u32,
    /// Context length of the loaded context (all slots together).
    pub n_ctx: u32,
    /// Context length available to one sequence.
    pub n_ctx_per_sequence: u32,
    pub n_parallel: u32,
    pub n_threads: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub n_gpu_layers: u32,
    /// The devices the model's offloaded layers live on (`CUDA0`, `Vulkan0`); empty on the CPU.
    #[serde(default)]
    pub gpu_devices: Vec<String>,
    pub flash_attention: FlashAttention,
    pub kv_cache_type: KvCacheType,
    pub template_source: TemplateSource,
    pub load_time_ms: f64,
    /// Speculative decoding, and the draft model's file name with `draft`.
    #[serde(default)]
    pub speculative: SpeculativeMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_model: Option<String>,
    /// The KV cache's host tier: the most host memory the states of sequences pushed out of
    /// their slots may take (planned at load unless the load named it).
    #[serde(default)]
    pub kv_host_budget_bytes: u64,
    /// The planner's verdict on a proposed draft model (`LoadParams::draft_when_advised`):
    /// why it was loaded or left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_verdict: Option<DraftVerdict>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
    /// The caller cancelled it.
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// The kinds of failure a worker reports; callers branch on these, not on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The model file does not exist.
    FileMissing,
    /// The file is not a GGUF file (wrong magic).
    NotGguf,
    /// llama.cpp does not know the model's architecture.
    UnsupportedArchitecture,
    /// Not enough memory for the weights, the KV cache or the compute buffers.
    OutOfMemory,
    /// Any other load failure (a truncated or corrupt file, for example).
    LoadFailed,
    /// A request arrived before any model was loaded.
    NoModelLoaded,
    /// The prompt does not fit the context.
    ContextLengthExceeded,
    /// The request is malformed (bad sampling values, empty prompt, bad JSON line).
    InvalidRequest,
    /// The chat template could not be rendered.
    TemplateFailed,
    /// llama.cpp failed during decode.
    DecodeFailed,
    /// The request id is already in flight.
    DuplicateRequest,
    /// Too many requests are waiting; try again later.
    QueueFull,
    /// The output constraint (JSON schema, grammar) is invalid.
    InvalidConstraint,
}

/// A failure, with a message fit to show a user (no file-system paths beyond a file name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerError {
    pub kind: ErrorKind,
    pub message: String,
    /// Token counts, for `ContextLengthExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_ctx: Option<u32>,
}

impl WorkerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            prompt_tokens: None,
            n_ctx: None,
        }
    }
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WorkerError {}

/// What a llama.cpp buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferPurpose {
    /// Model weights (`model buffer`, including the CPU's repacked copies).
    Model,
    /// The KV cache (or a recurrent state): `KV buffer`, `RS buffer`.
    KvCache,
    /// Logits and embeddings returned to the caller (`output buffer`).
    Output,
    /// Scratch of the compute graph (`compute buffer`).
    Compute,
}

/// One buffer llama.cpp allocated, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBuffer {
    /// ggml's buffer type: `CPU_Mapped`, `CPU_REPACK`, `CPU`, `CUDA0`, `CUDA_Host`, `Metal`.
    pub buffer_type: String,
    pub purpose: BufferPurpose,
    pub bytes: u64,
}

/// What llama.cpp allocated for the loaded model and its context (from its load log, to
/// 0.01 MiB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryReport {
    pub buffers: Vec<MemoryBuffer>,
    pub model_bytes: u64,
    pub kv_cache_bytes: u64,
    pub output_bytes: u64,
    pub compute_bytes: u64,
    /// All buffers together.
    pub total_bytes: u64,
    /// llama.cpp's count of the weights' bytes (`llama_model_size`), for comparison.
    pub model_size_bytes: u64,
}

impl MemoryReport {
    /// Sums `buffers` by purpose.
    pub fn from_buffers(buffers: Vec<MemoryBuffer>, model_size_bytes: u64) -> MemoryReport {
        let sum = |purpose: BufferPurpose| -> u64 {
            buffers
                .iter()
                .filter(|buffer| buffer.purpose == purpose)
                .map(|buffer| buffer.bytes)
                .sum()
        };
        let (model_bytes, kv_cache_bytes, output_bytes, compute_bytes) = (
            sum(BufferPurpose::Model),
            sum(BufferPurpose::KvCache),
            sum(BufferPurpose::Output),
            sum(BufferPurpose::Compute),
        );
        MemoryReport {
            total_bytes: model_bytes + kv_cache_bytes + output_bytes + compute_bytes,
            buffers,
            model_bytes,
            kv_cache_bytes,
            output_bytes,
            compute_bytes,
            model_size_bytes,
        }
    }
}

/// A device of llama.cpp's backends (a ggml backend device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendDevice {
    /// `CPU`, `CUDA0`, `Metal`, `Vulkan0`.
    pub name: String,
    pub description: String,
    /// `CPU`, `CUDA`, `Metal`, `Vulkan`, `BLAS`.
    pub backend: String,
    /// `cpu`, `gpu`, `integrated_gpu`, `accelerator` or `unknown`.
    pub device_type: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// The PCI bus id, where the backend knows it (how one GPU seen by two backends is told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Whether Hearth offloads to this device (a GPU seen by two backends is used through one).
    #[serde(default)]
    pub used: bool,
}

/// Messages from the worker to the supervisor (one JSON object per line on stdout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// First line a worker writes.
    Ready {
        protocol_version: u32,
        engine_version: String,
        pid: u32,
    },
    Loaded {
        request_id: u64,
        model: ModelInfo,
    },
    /// A generation was admitted and its prompt tokenized.
    Started {
        request_id: u64,
        prompt_tokens: u32,
        /// Prompt tokens found in the KV cache and not computed again.
        cached_prompt_tokens: u32,
        template_source: Option<TemplateSource>,
        /// Oldest chat messages dropped so the prompt fits (with `DropOldestTurns`).
        #[serde(default)]
        dropped_messages: u32,
        /// The tags the output thinks in, when the model thinks in tags.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thinking: Option<ThinkingSyntax>,
    },
    /// Newly decoded text: always whole UTF-8 characters, never part of a stop string.
    Token {
        request_id: u64,
        text: String,
        /// Per-token log-probabilities of the tokens behind `text`, when asked for.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logprobs: Vec<TokenLogprob>,
    },
    Done {
        request_id: u64,
        finish_reason: FinishReason,
        metrics: RequestMetrics,
        /// The stop string that ended the text, when one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_sequence: Option<String>,
    },
    Tokenized {
        request_id: u64,
        tokens: Vec<i32>,
    },
    /// One input's pooled, L2-normalized embedding.
    Embedding {
        request_id: u64,
        index: u32,
        embedding: Vec<f32>,
    },
    /// Every input of an `Embed` request was embedded; `prompt_tokens` counts them all.
    Embedded {
        request_id: u64,
        prompt_tokens: u32,
    },
    Rendered {
        request_id: u64,
        text: String,
        template_source: TemplateSource,
        prompt_tokens: u32,
    },
    Stats {
        request_id: u64,
        /// Requests waiting for a slot.
        queued: u32,
        /// Sequences prefilling or decoding.
        running: u32,
        n_parallel: u32,
        /// Batches decoded since the model was loaded (one per scheduler step).
        steps: u64,
    },
    /// What llama.cpp allocated for the loaded model and context.
    Memory {
        request_id: u64,
        report: MemoryReport,
    },
    /// The devices llama.cpp's backends offer.
    Devices {
        request_id: u64,
        devices: Vec<BackendDevice>,
        /// The backend libraries found, loaded or failed, and the CPU variant in use.
        #[serde(default)]
        backends: BackendReport,
    },
    /// A failure of one request (`request_id` set) or of the protocol itself (`None`).
    Error {
        request_id: Option<u64>,
        error: WorkerError,
    },
}

impl WorkerEvent {
    /// The request this event belongs to, if any.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            WorkerEvent::Ready { .. } => None,
            WorkerEvent::Loaded { request_id, .. }
            | WorkerEvent::Started { request_id, .. }
            | WorkerEvent::Token { request_id, .. }
            | WorkerEvent::Done { request_id, .. }
            | WorkerEvent::Tokenized { request_id, .. }
            | WorkerEvent::Embedding { request_id, .. }
            | WorkerEvent::Embedded { request_id, .. }
            | WorkerEvent::Rendered { request_id, .. }
            | WorkerEvent::Stats { request_id, .. }
            | WorkerEvent::Memory { request_id, .. }
            | WorkerEvent::Devices { request_id, .. } => Some(*request_id),
            WorkerEvent::Error { request_id, .. } => *request_id,
        }
    }

    /// True for the last event a request receives.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            WorkerEvent::Loaded { .. }
                | WorkerEvent::Done { .. }
                | WorkerEvent::Tokenized { .. }
                | WorkerEvent::Embedded { .. }
                | WorkerEvent::Rendered { .. }
                | WorkerEvent::Stats { .. }
                | WorkerEvent::Memory { .. }
                | WorkerEvent::Devices { .. }
                | WorkerEvent::Error { .. }
        )
    }
}

#[cfg(test)]
mod tests;
