//! What a model load asks of the engine ([`LoadParams`]): context, batches, offload, flash
//! attention, the KV cache's type and tiers, speculative decoding, and their defaults.

use serde::{Deserialize, Serialize};

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
