//! The request and event types of the worker protocol.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::{BackendReport, DraftVerdict, EmbedRequest, RequestMetrics, ThinkingSyntax};

/// Default context length when the caller does not choose one: enough for a long chat, small
/// enough that the KV cache of a small model stays in the tens of megabytes.
pub const DEFAULT_N_CTX: u32 = 4096;
/// Default logical batch: the most prompt tokens handed to llama.cpp in one decode call.
pub const DEFAULT_N_BATCH: u32 = 512;
/// Default physical batch (llama.cpp's own default).
pub const DEFAULT_N_UBATCH: u32 = 512;
/// Default number of sequences (slots) that share one context.
pub const DEFAULT_N_PARALLEL: u32 = 1;
/// Default bound on a step's slowdown from prefill beside decoding streams.
pub const DEFAULT_MAX_DECODE_SLOWDOWN: f64 = 2.0;
/// Default number of requests that may wait for a slot.
pub const DEFAULT_MAX_QUEUE: u32 = 64;
/// Default bound on the tokens speculative decoding guesses per step.
pub const DEFAULT_MAX_DRAFT_TOKENS: u32 = 8;
/// The engine's KV cache layout (llama.cpp's `kv_unified`): one stream per sequence, not one
/// buffer shared by all, so a sequence's cells sit at the same places whether it runs alone or
/// beside others (which keeps greedy output identical under batching). Not a load parameter:
/// the engine always sets it, and the fit planner sizes the cache by it.
pub const KV_UNIFIED: bool = false;
/// Whether sliding-window layers get a full-size KV cache (llama.cpp's `swa_full`, true by its
/// default): the engine's setting, which the fit planner sizes the cache by.
pub const SWA_FULL: bool = true;

/// How to run llama.cpp's flash attention kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashAttention {
    /// On the CPU, on; with GPU layers, llama.cpp decides per device
    /// ([`FlashAttention::for_offload`]).
    #[default]
    Auto,
    On,
    Off,
}

impl FlashAttention {
    /// What the engine asks of llama.cpp with `n_gpu_layers` layers offloaded (`Auto`: llama.cpp
    /// decides). On the CPU, `Auto` is `On`: flash attention is then the vendored llama.cpp's
    /// batch-invariant kernel (vendor/README.md), which computes every query row the same way
    /// alone, batched or from a cached prefix, and is faster than plain attention (GQA heads
    /// share one pass over K/V, masked cells are skipped). With GPU offload, llama.cpp decides.
    pub fn for_offload(self, n_gpu_layers: u32) -> FlashAttention {
        match self {
            FlashAttention::Auto if n_gpu_layers == 0 => FlashAttention::On,
            choice => choice,
        }
    }
}

/// Element type of the KV cache. Quantized caches need flash attention for the V part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum KvCacheType {
    #[default]
    F16,
    #[cfg_attr(feature = "clap", value(name = "q8_0"))]
    Q8_0,
    #[cfg_attr(feature = "clap", value(name = "q4_0"))]
    Q4_0,
}

impl KvCacheType {
    /// The name on the wire and on the command line (`f16`, `q8_0`, `q4_0`).
    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheType::F16 => "f16",
            KvCacheType::Q8_0 => "q8_0",
            KvCacheType::Q4_0 => "q4_0",
        }
    }
}

/// Speculative decoding: what guesses the next tokens for the model to verify in one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum SpeculativeMode {
    /// One token per step.
    #[default]
    Off,
    /// Continuations of the last tokens found earlier in the prompt and the answer.
    Ngram,
    /// A smaller model with the same vocabulary (`LoadParams::draft_model`).
    Draft,
}

impl SpeculativeMode {
    /// The name on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SpeculativeMode::Off => "off",
            SpeculativeMode::Ngram => "ngram",
            SpeculativeMode::Draft => "draft",
        }
    }
}

/// How many of a model's layers go to the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuLayers {
    /// The fit planner's offload for the devices the engine uses and their free memory (none
    /// without a GPU). If the load still runs out of memory, the engine retries once with a
    /// smaller offload.
    #[default]
    Auto,
    /// Exactly this many (more than the model has means all of them and the output layer).
    Count(u32),
}

impl GpuLayers {
    /// The word the CLI and the wire use for [`GpuLayers::Auto`].
    pub const AUTO: &'static str = "auto";
}

impl std::fmt::Display for GpuLayers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuLayers::Auto => formatter.write_str(Self::AUTO),
            GpuLayers::Count(count) => write!(formatter, "{count}"),
        }
    }
}

impl std::str::FromStr for GpuLayers {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case(Self::AUTO) {
            return Ok(GpuLayers::Auto);
        }
        text.parse::<u32>()
            .map(GpuLayers::Count)
            .map_err(|_| format!("{text:?} is neither `auto` nor a number of layers"))
    }
}

/// On the wire: `"auto"` or a number.
impl Serialize for GpuLayers {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GpuLayers::Auto => serializer.serialize_str(Self::AUTO),
            GpuLayers::Count(count) => serializer.serialize_u32(*count),
        }
    }
}

impl<'de> Deserialize<'de> for GpuLayers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Count(u32),
            Word(String),
        }
        match Wire::deserialize(deserializer)? {
            Wire::Count(count) => Ok(GpuLayers::Count(count)),
            Wire::Word(word) => word.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The disk tier's default budget.
pub const DEFAULT_KV_DISK_BUDGET_BYTES: u64 = 2 << 30;
/// The disk tier's folder inside the data folder.
pub const KV_CACHE_DIR_NAME: &str = "kv-cache";
/// The disk tier's files end in `.kv`; files being written start with a dot.
pub const KV_CACHE_FILE_EXTENSION: &str = "kv";

/// Parameters of a model load. Every field has a default so a caller names only what it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadParams {
    /// Total context length in tokens (shared by all slots).
    pub n_ctx: u32,
    /// Logical batch size: the most tokens one decode call processes.
    pub n_batch: u32,
    /// Physical batch size.
    pub n_ubatch: u32,
    /// Threads for decode and prefill; `None` means the machine's physical cores.
    pub n_threads: Option<u32>,
    /// Layers offloaded to the GPU (none on a CPU-only machine, whatever this says).
    pub n_gpu_layers: GpuLayers,
    pub flash_attention: FlashAttention,
    pub kv_cache_type: KvCacheType,
    /// Number of sequences that share the context.
    pub n_parallel: u32,
    /// Map the model file instead of reading it into anonymous memory.
    pub use_mmap: bool,
    /// Most prompt tokens prefilled in one scheduler step while other sequences are decoding,
    /// so a long prompt never stalls running streams for long. `None`: a built-in default.
    pub prefill_chunk: Option<u32>,
    /// Reuse the longest common prefix already in a slot's KV cache.
    pub prefix_cache: bool,
    /// How much slower than a decode-only step a step may get from prefilling a prompt beside
    /// running streams (used when `prefill_chunk` is not fixed).
    pub max_decode_slowdown: f64,
    /// Most requests waiting for a slot; more are refused with `QueueFull`.
    pub max_queue: u32,
    /// Speculative decoding; `Draft` needs `draft_model`.
    pub speculative: SpeculativeMode,
    /// The draft model's GGUF file (same vocabulary as the model), loaded in the same worker.
    pub draft_model: Option<std::path::PathBuf>,
    /// Most tokens guessed per step; the engine adapts how many to the acceptance rate.
    pub max_draft_tokens: u32,
    /// `draft_model` is only proposed (the catalog's draft, not one the user named): the
    /// worker loads it only when the planner says the model and the draft fit in memory and
    /// the predicted speedup is above 1, and runs without speculation otherwise
    /// ([`ModelInfo::draft_verdict`] says which and why).
    pub draft_when_advised: bool,
    /// The per-token acceptance rate measured for this model and draft pair (see
    /// [`DraftVerdict`]); `None`: the planner's prior.
    pub draft_acceptance: Option<f64>,
    /// Host memory for the KV states of sequences pushed out of their slots (0: none kept).
    /// `None`: the fit planner sets it at load, from the memory the load leaves free
    /// (`hearth_probe::kv_host`).
    pub kv_host_budget_bytes: Option<u64>,
    /// Folder of the disk tier of the KV cache (`None`: no disk tier). Files there are keyed
    /// by model, context parameters and llama.cpp version, so one folder serves every model.
    pub kv_disk_dir: Option<std::path::PathBuf>,
    /// Most bytes the disk tier's folder holds.
    pub kv_disk_budget_bytes: u64,
}

impl Default for LoadParams {
    fn default() -> Self {
        Self {
            n_ctx: DEFAULT_N_CTX,
            n_batch: DEFAULT_N_BATCH,
            n_ubatch: DEFAULT_N_UBATCH,
            n_threads: None,
            n_gpu_layers: GpuLayers::Auto,
            flash_attention: FlashAttention::Auto,
            kv_cache_type: KvCacheType::F16,
            n_parallel: DEFAULT_N_PARALLEL,
            use_mmap: true,
            prefill_chunk: None,
            prefix_cache: true,
            max_decode_slowdown: DEFAULT_MAX_DECODE_SLOWDOWN,
            max_queue: DEFAULT_MAX_QUEUE,
            speculative: SpeculativeMode::Off,
            draft_model: None,
            max_draft_tokens: DEFAULT_MAX_DRAFT_TOKENS,
            draft_when_advised: false,
            draft_acceptance: None,
            kv_host_budget_bytes: None,
            kv_disk_dir: None,
            kv_disk_budget_bytes: DEFAULT_KV_DISK_BUDGET_BYTES,
        }
    }
}

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
