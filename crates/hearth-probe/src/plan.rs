//! The fit planner: pure functions from a device profile, the model's quantization variants
//! and the user's wishes to a plan (quantization, context, GPU offload, KV cache type, flash
//! attention, parallel sequences), its memory per device and its predicted speed.
//!
//! Rules, in order:
//! 1. Budgets are free memory minus a stated margin, never total memory: the host keeps
//!    [`HOST_MARGIN_MIN_BYTES`] or [`HOST_MARGIN_SHARE`] of its memory for the OS and other
//!    programs, a GPU keeps [`GPU_MARGIN_MIN_BYTES`] or [`GPU_MARGIN_SHARE`]; GPU runtime
//!    overheads are counted as memory, not hidden in the margin. With unified memory, host
//!    and GPU allocations share one budget.
//! 2. The whole model on the GPU(s) beats a better quantization split between GPU and CPU:
//!    decode on the CPU part is several times slower. So variants are tried fully offloaded
//!    first (best-ranked first, the KV cache in f16, then q8_0), then with as many layers on
//!    the GPU(s) as fit, then on the CPU alone.
//! 3. The context starts at the user's minimum (default [`DEFAULT_MIN_CONTEXT`], at most the
//!    trained length) and then grows, in steps of 256 cells, while everything still fits, up
//!    to the trained length (at most [`GPU_CONTEXT_CEILING`]; [`CPU_CONTEXT_CEILING`] when the
//!    layers run on the CPU, whose prefill makes longer prompts impractical).
//! 4. With room left on a GPU, a larger quantization that still fits replaces the chosen one.

use hearth_protocol::KvCacheType;
use serde::{Deserialize, Serialize};

mod device_budgets;
mod ranking;

pub(crate) use device_budgets::fill_budgets;
use device_budgets::gpu_split;
pub use device_budgets::{budgets, UNIFIED_POOL};
pub use ranking::nominal_bits_per_weight;
use ranking::preference_order;

use crate::kv_host::{kv_host_budget, KvHostBudget};
use crate::memory::{memory_breakdown, ContextConfig, DeviceMemory, Placement};
use crate::model::ModelFacts;
use crate::profile::{DeviceProfile, GIB, MIB};
use crate::speed::{predict_speed, SpeedPrediction, DEFAULT_DECODE_POSITION};

/// Context per sequence the planner aims for at least, unless the user says otherwise: a long
/// chat with a system prompt.
pub const DEFAULT_MIN_CONTEXT: u32 = 4096;
/// Largest context planned for layers on the CPU.
pub const CPU_CONTEXT_CEILING: u32 = 32_768;
/// Largest context planned for layers on GPUs.
pub const GPU_CONTEXT_CEILING: u32 = 131_072;
/// Host memory kept free: at least 1 GiB, or 10% of the machine's memory.
pub const HOST_MARGIN_MIN_BYTES: u64 = GIB;
pub const HOST_MARGIN_SHARE: f64 = 0.10;
/// GPU memory kept free besides the runtime overhead: at least 256 MiB, or 5% of the card.
pub const GPU_MARGIN_MIN_BYTES: u64 = 256 * MIB;
pub const GPU_MARGIN_SHARE: f64 = 0.05;
/// Context steps: llama.cpp pads the KV cache to 256 cells anyway.
const CONTEXT_STEP: u32 = 256;
/// What the user prefers when several quantizations fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityPreference {
    /// The smallest reasonable quantization: fastest decode.
    Fastest,
    /// Q4_K_M to Q6_K first; larger only with room to spare.
    #[default]
    Balanced,
    /// The largest quantization that fits.
    Best,
}

/// What the user asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wishes {
    /// Exact context length (all sequences together), as `hearth fit --ctx`.
    pub context: Option<u32>,
    /// Least context per sequence.
    pub min_context: Option<u32>,
    pub quality: QualityPreference,
    /// Sequences served at once (they share the context).
    pub n_parallel: u32,
}

impl Default for Wishes {
    fn default() -> Self {
        Wishes {
            context: None,
            min_context: None,
            quality: QualityPreference::Balanced,
            n_parallel: 1,
        }
    }
}

/// One quantization of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// `Q4_K_M`, `Q8_0`, ...
    pub quantization: String,
    pub facts: ModelFacts,
    /// True when the facts were scaled from another variant's header, not read from this
    /// variant's own file.
    pub estimated: bool,
}

/// A device's budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceBudget {
    /// `host`, a GPU's name, or `unified` for a shared pool.
    pub device: String,
    pub free_bytes: u64,
    pub margin_bytes: u64,
    /// `free - margin`: what the plan may use.
    pub budget_bytes: u64,
    /// What the plan uses (overheads included).
    pub planned_bytes: u64,
}

/// Where the model's layers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offload {
    /// Every layer and the output on GPUs.
    Full,
    /// Some layers on GPUs, the rest on the CPU.
    Partial,
    /// Everything on the CPU.
    None,
}

/// How to run flash attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashAttentionChoice {
    /// The engine decides: on on the CPU (Hearth's batch-invariant kernel), llama.cpp's choice
    /// with GPU layers (on for CUDA, Metal, Vulkan).
    Auto,
    /// Required: a quantized KV cache needs it.
    On,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub quantization: String,
    pub estimated_from_other_variant: bool,
    pub n_ctx: u32,
    pub n_ctx_per_sequence: u32,
    pub n_parallel: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub n_gpu_layers: u32,
    /// Share of the offloaded layers per GPU (empty for one GPU or none).
    pub gpu_split: Vec<f64>,
    pub kv_cache_type: KvCacheType,
    pub flash_attention: FlashAttentionChoice,
    pub offload: Offload,
    pub config: ContextConfig,
    pub placement: Placement,
    pub memory: Vec<DeviceMemory>,
    pub budgets: Vec<DeviceBudget>,
    pub speed: SpeedPrediction,
    /// Host memory for the KV states of conversations pushed out of their slots.
    pub kv_host: KvHostBudget,
    /// Plain-language remarks: what limited the plan, what was estimated.
    pub notes: Vec<String>,
}

impl Plan {
    /// llama.cpp buffers over all devices (what `--verify` compares).
    pub fn buffers_bytes(&self) -> u64 {
        self.memory.iter().map(DeviceMemory::buffers_bytes).sum()
    }
}

/// Why no plan exists.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("no quantization variant to plan for")]
    NoVariants,
    #[error("{architecture} keeps a recurrent state the planner does not model")]
    Unsupported { architecture: String },
    #[error("does not fit: the smallest plan ({quantization}, {n_ctx} tokens of context) needs {needed_bytes} bytes, the budget is {budget_bytes} bytes")]
    DoesNotFit {
        quantization: String,
        n_ctx: u32,
        needed_bytes: u64,
        budget_bytes: u64,
    },
}

/// One candidate: a variant at a KV type, context and placement.
struct Candidate<'a> {
    variant: &'a Variant,
    config: ContextConfig,
    placement: Placement,
}

impl Candidate<'_> {
    fn evaluate(
        &self,
        profile: &DeviceProfile,
        budgets: &[DeviceBudget],
    ) -> (Vec<DeviceMemory>, Option<Vec<DeviceBudget>>) {
        let memory = memory_breakdown(&self.variant.facts, &self.config, &self.placement, profile);
        let filled = fill_budgets(&memory, budgets, profile.unified_memory);
        (memory, filled)
    }
}

/// Plans `variants` on `profile` for `wishes`.
pub fn plan(
    variants: &[Variant],
    profile: &DeviceProfile,
    wishes: &Wishes,
) -> Result<Plan, PlanError> {
    let first = variants.first().ok_or(PlanError::NoVariants)?;
    if first.facts.recurrent {
        return Err(PlanError::Unsupported {
            architecture: first.facts.architecture.clone(),
        });
    }
    let budgets = budgets(profile);
    let n_parallel = wishes.n_parallel.max(1);
    let split = gpu_split(&budgets, profile);
    let n_ctx_train = u32::try_from(first.facts.n_ctx_train)
        .unwrap_or(u32::MAX)
        .max(CONTEXT_STEP);
    let floor_for = |ceiling: u32| -> u32 {
        match wishes.context {
            Some(context) => context.max(n_parallel),
            None => {
                let per_sequence = wishes
                    .min_context
                    .unwrap_or(DEFAULT_MIN_CONTEXT)
                    .min(n_ctx_train);
                per_sequence
                    .saturating_mul(n_parallel)
                    .min(ceiling.max(per_sequence))
            }
        }
    };
    let ceiling_for = |offload: Offload| -> u32 {
        match wishes.context {
            Some(context) => context.max(n_parallel),
            None => {
                let cap = if offload == Offload::Full {
                    GPU_CONTEXT_CEILING
                } else {
                    CPU_CONTEXT_CEILING
                };
                n_ctx_train.min(cap).saturating_mul(n_parallel)
            }
        }
    };
    let config_for = |n_ctx: u32, kv_cache_type: KvCacheType| ContextConfig {
        n_ctx,
        n_parallel,
        kv_cache_type,
        ..ContextConfig::engine_defaults(n_ctx)
    };
    let placement_for = |n_gpu_layers: u32| Placement {
        n_gpu_layers,
        gpu_split: split.clone(),
    };
    let kv_types = [KvCacheType::F16, KvCacheType::Q8_0];

    let mut phases = Vec::new();
    if !profile.gpus.is_empty() {
        phases.push(Offload::Full);
        phases.push(Offload::Partial);
    }
    phases.push(Offload::None);

    let mut smallest_failure: Option<(String, u32, u64, u64)> = None;
    for phase in phases {
        let ceiling = ceiling_for(phase);
        let floor = floor_for(ceiling);
        let order = preference_order(variants, wishes.quality, phase != Offload::Full);
        for &index in &order {
            let variant = &variants[index];
            let n_layer = variant.facts.n_layer;
            for kv_cache_type in kv_types {
                let layer_choices: Vec<u32> = match phase {
                    Offload::Full => vec![n_layer + 1],
                    Offload::Partial => (1..=n_layer).rev().collect(),
                    Offload::None => vec![0],
                };
                for n_gpu_layers in layer_choices {
                    let candidate = Candidate {
                        variant,
                        config: config_for(floor, kv_cache_type),
                        placement: placement_for(n_gpu_layers),
                    };
                    let (memory, filled) = candidate.evaluate(profile, &budgets);
                    if filled.is_none() {
                        let needed: u64 = memory.iter().map(DeviceMemory::total_bytes).sum();
                        let budget: u64 = budgets.iter().map(|budget| budget.budget_bytes).sum();
                        if smallest_failure
                            .as_ref()
                            .is_none_or(|(_, _, smallest, _)| needed < *smallest)
                        {
                            smallest_failure =
                                Some((variant.quantization.clone(), floor, needed, budget));
                        }
                        continue;
                    }
                    let mut chosen = candidate;
                    // Rule 4: with the whole model on GPUs, take the largest variant that fits.
                    if phase == Offload::Full && wishes.quality != QualityPreference::Fastest {
                        chosen = upgrade_variant(chosen, variants, profile, &budgets);
                    }
                    let chosen = grow_context(chosen, ceiling, profile, &budgets);
                    return Ok(finish(chosen, phase, profile, &budgets, floor, ceiling));
                }
            }
        }
    }
    let (quantization, n_ctx, needed_bytes, budget_bytes) =
        smallest_failure.unwrap_or((first.quantization.clone(), 0, 0, 0));
    Err(PlanError::DoesNotFit {
        quantization,
        n_ctx,
        needed_bytes,
        budget_bytes,
    })
}

/// Replaces the candidate's variant by the largest one that also fits fully offloaded.
fn upgrade_variant<'a>(
    candidate: Candidate<'a>,
    variants: &'a [Variant],
    profile: &DeviceProfile,
    budgets: &[DeviceBudget],
) -> Candidate<'a> {
    let current_bits = nominal_bits_per_weight(&candidate.variant.quantization);
    let mut larger: Vec<&Variant> = variants
        .iter()
        .filter(|variant| nominal_bits_per_weight(&variant.quantization) > current_bits)
        .collect();
    larger.sort_by(|a, b| {
        nominal_bits_per_weight(&b.quantization)
            .total_cmp(&nominal_bits_per_weight(&a.quantization))
    });
    for variant in larger {
        let upgraded = Candidate {
            variant,
            config: candidate.config.clone(),
            placement: Placement {
                n_gpu_layers: variant.facts.n_layer + 1,
                gpu_split: candidate.placement.gpu_split.clone(),
            },
        };
        if upgraded.evaluate(profile, budgets).1.is_some() {
            return upgraded;
        }
    }
    candidate
}

/// Grows the context in steps of 256 up to `ceiling` while the candidate still fits.
fn grow_context<'a>(
    candidate: Candidate<'a>,
    ceiling: u32,
    profile: &DeviceProfile,
    budgets: &[DeviceBudget],
) -> Candidate<'a> {
    let fits_at = |n_ctx: u32| {
        let trial = Candidate {
            variant: candidate.variant,
            config: ContextConfig {
                n_ctx,
                ..candidate.config.clone()
            },
            placement: candidate.placement.clone(),
        };
        trial.evaluate(profile, budgets).1.is_some()
    };
    let floor = candidate.config.n_ctx;
    if ceiling <= floor {
        return candidate;
    }
    // Binary search over multiples of 256 in (floor, ceiling]: memory grows with the context.
    let (mut low, mut high) = (floor, ceiling);
    if fits_at(high) {
        low = high;
    } else {
        while high - low > CONTEXT_STEP {
            let middle = (low + (high - low) / 2) / CONTEXT_STEP * CONTEXT_STEP;
            let middle = middle.max(low + 1);
            if fits_at(middle) {
                low = middle;
            } else {
                high = middle;
            }
        }
    }
    Candidate {
        variant: candidate.variant,
        config: ContextConfig {
            n_ctx: low,
            ..candidate.config
        },
        placement: candidate.placement,
    }
}

fn finish(
    candidate: Candidate<'_>,
    offload: Offload,
    profile: &DeviceProfile,
    budgets: &[DeviceBudget],
    floor: u32,
    ceiling: u32,
) -> Plan {
    let (memory, filled) = candidate.evaluate(profile, budgets);
    let filled = filled.unwrap_or_else(|| budgets.to_vec());
    let facts = &candidate.variant.facts;
    let config = candidate.config;
    let mut notes = Vec::new();
    if candidate.variant.estimated {
        notes.push(format!(
            "{} sizes are scaled from another variant's header (not downloaded yet)",
            candidate.variant.quantization
        ));
    }
    if config.kv_cache_type != KvCacheType::F16 {
        notes.push("the KV cache is quantized to q8_0 so the context fits".to_string());
    }
    if config.n_ctx < ceiling {
        notes.push(format!(
            "context limited by memory to {} tokens (the model was trained for {})",
            config.n_ctx, facts.n_ctx_train
        ));
    }
    if config.n_ctx < floor {
        notes.push(format!("less context than the {floor} tokens asked for"));
    }
    if offload == Offload::Partial {
        notes.push(format!(
            "{} of {} layers fit on the GPU; the rest run on the CPU",
            candidate.placement.n_gpu_layers.min(facts.n_layer),
            facts.n_layer
        ));
    }
    if let Some(swa) = &facts.sliding_window {
        if config.swa_full {
            // What the choice costs: the same plan with window-sized caches.
            let windowed = ContextConfig {
                swa_full: false,
                ..config
            };
            let kv = |memory: &[DeviceMemory]| -> u64 {
                memory.iter().map(|device| device.kv_cache_bytes).sum()
            };
            let full_kv = kv(&memory);
            let windowed_kv = kv(&memory_breakdown(
                facts,
                &windowed,
                &candidate.placement,
                profile,
            ));
            notes.push(format!(
                "sliding-window layers keep a full-size KV cache (swa_full), so each turn reuses the conversation's cached prefix: {:.1} MiB of KV cache, {:.1} MiB more than window-sized ({} tokens)",
                full_kv as f64 / crate::profile::MIB as f64,
                full_kv.saturating_sub(windowed_kv) as f64 / crate::profile::MIB as f64,
                swa.window
            ));
        }
    }
    if facts.expert_count > 0 {
        notes.push(format!(
            "mixture of experts: all {} experts are in memory, {} are read per token",
            facts.expert_count, facts.expert_used_count
        ));
    }
    let speed = predict_speed(
        facts,
        &config,
        &candidate.placement,
        profile,
        DEFAULT_DECODE_POSITION,
    );
    let kv_host = kv_host_budget(&memory, &filled, config.n_parallel);
    Plan {
        quantization: candidate.variant.quantization.clone(),
        estimated_from_other_variant: candidate.variant.estimated,
        n_ctx: config.n_ctx,
        n_ctx_per_sequence: config.n_ctx / config.n_parallel.max(1),
        n_parallel: config.n_parallel,
        n_batch: config.n_batch,
        n_ubatch: config.n_ubatch,
        n_gpu_layers: candidate.placement.n_gpu_layers,
        gpu_split: candidate.placement.gpu_split.clone(),
        kv_cache_type: config.kv_cache_type,
        // A quantized KV cache needs flash attention: ask for it rather than rely on `auto`
        // (which llama.cpp may turn off for a GPU that lacks it).
        flash_attention: if config.kv_cache_type == KvCacheType::F16 {
            FlashAttentionChoice::Auto
        } else {
            FlashAttentionChoice::On
        },
        offload,
        placement: candidate.placement,
        memory,
        budgets: filled,
        speed,
        kv_host,
        notes,
        config,
    }
}

#[cfg(test)]
mod tests;
