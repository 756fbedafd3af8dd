//! Command-line options shared by several subcommands.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use hearth_protocol::{
    BackendChoice, FlashAttention, GpuLayers, KvCacheType, LoadParams, SamplingParams,
    SpeculativeMode,
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FlashAttentionArg {
    Auto,
    On,
    Off,
}

/// `--backend`: clap's face of [`BackendChoice`].
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Auto,
    Cpu,
    Vulkan,
    Cuda,
    Metal,
}

impl From<BackendArg> for BackendChoice {
    fn from(backend: BackendArg) -> Self {
        match backend {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Cpu => BackendChoice::Cpu,
            BackendArg::Vulkan => BackendChoice::Vulkan,
            BackendArg::Cuda => BackendChoice::Cuda,
            BackendArg::Metal => BackendChoice::Metal,
        }
    }
}

/// How to load the model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A GGUF model file, or the id of an installed model (see `hearth ls`).
    #[arg(long, short = 'm', default_value = crate::models::DEFAULT_MODEL_ID)]
    pub model: PathBuf,
    /// Context length in tokens (all parallel sequences together).
    #[arg(long = "ctx", default_value_t = hearth_protocol::DEFAULT_N_CTX)]
    pub n_ctx: u32,
    /// Logical batch size (most prompt tokens per decode call).
    #[arg(long = "batch", default_value_t = hearth_protocol::DEFAULT_N_BATCH)]
    pub n_batch: u32,
    /// Physical batch size.
    #[arg(long = "ubatch", default_value_t = hearth_protocol::DEFAULT_N_UBATCH)]
    pub n_ubatch: u32,
    /// Threads (default: the physical cores).
    #[arg(long = "threads")]
    pub n_threads: Option<u32>,
    /// Layers to offload to the GPU: `auto` (the planner's offload for the GPU's free memory;
    /// none without a GPU) or a number.
    #[arg(long = "gpu-layers", default_value = GpuLayers::AUTO)]
    pub n_gpu_layers: GpuLayers,
    /// Flash attention: `auto` is on on the CPU (Hearth's batch-invariant kernel) and
    /// llama.cpp's choice with GPU layers.
    #[arg(long = "flash-attn", value_enum, default_value = "auto")]
    pub flash_attention: FlashAttentionArg,
    /// Element type of the KV cache.
    #[arg(long = "kv-type", value_enum, default_value = "f16")]
    pub kv_cache_type: KvCacheType,
    /// Read the model into memory instead of mapping it.
    #[arg(long)]
    pub no_mmap: bool,
    /// Sequences decoded together (continuous batching); they share the context.
    #[arg(long = "parallel", default_value_t = hearth_protocol::DEFAULT_N_PARALLEL)]
    pub n_parallel: u32,
    /// Fixed prompt tokens per step while others decode (default: paced so running streams
    /// slow down at most --max-decode-slowdown times).
    #[arg(long)]
    pub prefill_chunk: Option<u32>,
    #[arg(long, default_value_t = hearth_protocol::DEFAULT_MAX_DECODE_SLOWDOWN)]
    pub max_decode_slowdown: f64,
    /// Compute every prompt in full instead of reusing cached prefixes.
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Speculative decoding: `draft` (a draft model guesses, see --draft-model), `ngram`
    /// (guesses from the prompt and the answer so far) or `off`. Default: `draft` when
    /// --draft-model is given; else the draft the catalog names for the model, when it is
    /// installed and the planner advises it for this machine (`hearth fit` shows why); else off.
    #[arg(long, value_enum)]
    pub speculative: Option<SpeculativeMode>,
    /// A smaller model with the same vocabulary that guesses tokens for the model to verify
    /// (a GGUF file or an installed model's id).
    #[arg(long)]
    pub draft_model: Option<PathBuf>,
    /// Most tokens guessed per step (adapted to the acceptance rate below that).
    #[arg(long, default_value_t = hearth_protocol::DEFAULT_MAX_DRAFT_TOKENS)]
    pub max_draft_tokens: u32,
}

impl ModelArgs {
    /// The file to load: `--model` itself when it is a file path, else the installed model
    /// with that id.
    pub fn model_path(&self) -> anyhow::Result<PathBuf> {
        crate::models::resolve_model_path(&self.model)
    }

    /// `--speculative`, or `draft` when a draft model is given or the catalog names an
    /// installed one for the model (that one only if the planner advises it: see
    /// [`ModelArgs::draft_when_advised`]).
    pub fn speculative_mode(&self) -> SpeculativeMode {
        match (self.speculative, self.draft_model_path()) {
            (Some(mode), _) => mode,
            (None, Some(_)) => SpeculativeMode::Draft,
            (None, None) => SpeculativeMode::Off,
        }
    }

    /// Whether the draft is only the catalog's proposal, left to the planner's verdict:
    /// neither `--speculative` nor `--draft-model` was given.
    pub fn draft_when_advised(&self) -> bool {
        self.speculative.is_none() && self.draft_model.is_none()
    }

    /// `--draft-model` (a file or an installed id), else the installed draft the catalog names
    /// for the model.
    pub fn draft_model_path(&self) -> Option<PathBuf> {
        match &self.draft_model {
            // An unknown id stays as given: the engine then says the file is missing.
            Some(draft) => {
                Some(crate::models::resolve_model_path(draft).unwrap_or_else(|_| draft.clone()))
            }
            None => crate::models::catalog_draft_path(&self.model),
        }
    }

    /// The per-token acceptance measured on this machine for the model and its draft, once
    /// enough tokens stand behind it ([`hearth_server::draft_acceptance`]).
    pub fn measured_draft_acceptance(&self) -> Option<f64> {
        let model = self.model_path().ok()?;
        let draft = self.draft_model_path()?;
        hearth_server::draft_acceptance::DraftAcceptanceFile::load(
            &hearth_supervisor::process::data_dir(),
        )
        .acceptance_rate(
            &hearth_server::draft_acceptance::file_name_of(&model),
            &hearth_server::draft_acceptance::file_name_of(&draft),
        )
    }

    pub fn load_params(&self) -> LoadParams {
        LoadParams {
            n_ctx: self.n_ctx,
            n_batch: self.n_batch,
            n_ubatch: self.n_ubatch,
            n_threads: self.n_threads,
            n_gpu_layers: self.n_gpu_layers,
            flash_attention: match self.flash_attention {
                FlashAttentionArg::Auto => FlashAttention::Auto,
                FlashAttentionArg::On => FlashAttention::On,
                FlashAttentionArg::Off => FlashAttention::Off,
            },
            kv_cache_type: self.kv_cache_type,
            use_mmap: !self.no_mmap,
            n_parallel: self.n_parallel,
            prefill_chunk: self.prefill_chunk,
            max_decode_slowdown: self.max_decode_slowdown,
            prefix_cache: !self.no_prefix_cache,
            speculative: self.speculative_mode(),
            draft_model: self.draft_model_path(),
            max_draft_tokens: self.max_draft_tokens,
            draft_when_advised: self.draft_when_advised(),
            draft_acceptance: self.measured_draft_acceptance(),
            ..LoadParams::default()
        }
    }
}

/// How to pick tokens.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// 0 means greedy (deterministic).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: i32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Seed of the sampler (same seed, same answer).
    #[arg(long)]
    pub seed: Option<u32>,
    /// Most tokens to generate.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Stop when this text appears (repeatable); it is not printed.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn sampling_params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
            ..SamplingParams::default()
        }
    }
}
