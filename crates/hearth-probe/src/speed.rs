//! Predicted prefill and decode speed.
//!
//! Decode reads every active weight once per token (plus the KV cache up to the current
//! position), so its time is bytes over effective bandwidth, summed over the devices the
//! layers run on. Small models are not bandwidth-bound on the CPU, though: ggml synchronises
//! its threads after every graph node, so a token also costs a fixed time per layer, and
//! sampling costs time per vocabulary entry. Those constants are calibrated against
//! `hearth bench` on the reference machine (see `docs/planner.md`); the bandwidth is measured
//! on each machine by the probe's kernels.
//!
//! Prefill is compute-bound: two operations per active parameter per token, at an effective
//! throughput per core (CPU) or a fraction of the measured FMA throughput (GPU).

use serde::{Deserialize, Serialize};

use crate::memory::{layer_device, ContextConfig, Placement};
use crate::model::{ModelFacts, TensorRole};
use crate::profile::DeviceProfile;

/// Context position at which decode speed is predicted by default: the middle of `hearth
/// bench`'s run (a 512-token prompt, then 128 generated tokens).
pub const DEFAULT_DECODE_POSITION: u64 = 576;
/// Share of the measured streaming-read bandwidth that the CPU's quantized matrix-vector
/// kernels reach (dequantization and dot products overlap the loads, not perfectly).
/// Calibrated with the per-layer time below on SmolLM2-135M Q4_1 and Gemma-3-270M Q4_K_M,
/// 2 threads, against `hearth bench` with the vendored CPU kernels (docs/planner.md): two
/// models, two unknowns.
const CPU_DECODE_BANDWIDTH_EFFICIENCY: f64 = 0.72;
/// Fixed CPU time per layer per token: ggml's thread barriers after each of a layer's ~30
/// graph nodes, and the small operations (norms, RoPE, attention) between the matrix products.
const CPU_SECONDS_PER_LAYER: f64 = 93e-6;
/// Fixed time per token outside the layers: building and scheduling the graph, the batch, the
/// engine loop and the UTF-8 and stop-string work of one token.
const SECONDS_PER_TOKEN: f64 = 0.6e-3;
/// Sampling and the logits copy: time per vocabulary entry per token.
const SECONDS_PER_VOCAB_ENTRY: f64 = 4e-9;
/// Share of the measured bandwidth a GPU's matrix-vector kernels reach.
const GPU_DECODE_BANDWIDTH_EFFICIENCY: f64 = 0.8;
/// Kernel launches per layer per token on a GPU (with CUDA graphs or Metal command buffers).
const GPU_SECONDS_PER_LAYER: f64 = 15e-6;
/// Bandwidth assumed for a device whose bandwidth was not measured (a conservative laptop).
const FALLBACK_CPU_BANDWIDTH: f64 = 20e9;
const FALLBACK_GPU_BANDWIDTH: f64 = 200e9;
/// Effective prefill throughput per physical core with AVX2 or NEON dot products on
/// quantized weights (ggml's int8 kernels), operations per second: the middle of what
/// SmolLM2 Q4_1 (71 GFLOP/s per core) and Gemma 3 Q4_K_M (68) reach here with the vendored
/// kernels; other quantization types' kernels differ, so expect about ±35%.
const CPU_PREFILL_FLOPS_PER_CORE: f64 = 69e9;
/// Share of the measured f32 FMA throughput that prefill reaches on a GPU (quantized matrix
/// kernels; tensor cores often do better, so this is a floor).
const GPU_PREFILL_FLOPS_EFFICIENCY: f64 = 0.5;
const FALLBACK_GPU_FLOPS: f64 = 5e12;

/// What the planner expects a model to run at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedPrediction {
    pub decode_tokens_per_second: f64,
    pub prefill_tokens_per_second: f64,
    /// The context position decode speed is predicted at.
    pub decode_position: u64,
    /// Bytes read per generated token (weights and KV cache), all devices together.
    pub bytes_read_per_token: f64,
    /// Share of a decode step's time spent streaming bytes (the rest is fixed per-layer and
    /// per-token overhead): near 1 means bandwidth-bound, near 0 overhead-bound.
    pub bandwidth_bound_share: f64,
}

/// Predicts speed for a model with `config` and `placement` on `profile`, decoding at
/// context position `decode_position`.
pub fn predict_speed(
    model: &ModelFacts,
    config: &ContextConfig,
    placement: &Placement,
    profile: &DeviceProfile,
    decode_position: u64,
) -> SpeedPrediction {
    let gpu_count = profile.gpus.len();
    let device_count = gpu_count + 1;
    // Bytes read per token on each device: index 0 is the CPU, 1.. the GPUs.
    let mut bytes_per_device = vec![0.0f64; device_count];
    let mut layers_per_device = vec![0u32; device_count];
    let device_slot =
        |device: Option<usize>| device.map_or(0, |gpu| (gpu + 1).min(device_count - 1));
    let expert_share = if model.expert_count > 0 {
        model.expert_used_count as f64 / model.expert_count as f64
    } else {
        1.0
    };
    for layer in 0..model.n_layer {
        let slot = device_slot(layer_device(model, placement, gpu_count, layer));
        layers_per_device[slot] += 1;
        let dense = model.bytes_where(|role| *role == TensorRole::Layer { layer }) as f64;
        let experts = model.bytes_where(|role| *role == TensorRole::Experts { layer }) as f64;
        bytes_per_device[slot] += dense + experts * expert_share;
        // The KV cache read at this position (capped by the layer's cache size).
        let layer_kv = crate::memory::layer_kv_bytes(model, config, layer as usize) as f64;
        let cells = if model.layer_uses_window(layer as usize) && !config.swa_full {
            model
                .sliding_window
                .as_ref()
                .map_or(config.kv_cells(), |swa| config.sliding_kv_cells(swa.window))
        } else {
            config.kv_cells()
        };
        let mut read_cells = decode_position.min(cells) as f64;
        if let Some(swa) = &model.sliding_window {
            if model.layer_uses_window(layer as usize) {
                read_cells = read_cells.min(swa.window as f64);
            }
        }
        bytes_per_device[slot] += layer_kv * read_cells / cells.max(1) as f64;
    }
    let output_slot = device_slot(layer_device(model, placement, gpu_count, model.n_layer));
    bytes_per_device[output_slot] += model.lm_head_bytes() as f64;

    let mut streaming_seconds = 0.0;
    let mut fixed_seconds = SECONDS_PER_TOKEN + SECONDS_PER_VOCAB_ENTRY * model.n_vocab as f64;
    for (slot, bytes) in bytes_per_device.iter().enumerate() {
        if slot == 0 {
            let bandwidth = profile
                .cpu
                .read_bandwidth_bytes_per_second
                .unwrap_or(FALLBACK_CPU_BANDWIDTH);
            streaming_seconds += bytes / (bandwidth * CPU_DECODE_BANDWIDTH_EFFICIENCY);
            fixed_seconds += f64::from(layers_per_device[slot]) * CPU_SECONDS_PER_LAYER;
        } else {
            let bandwidth = profile.gpus[slot - 1]
                .read_bandwidth_bytes_per_second
                .unwrap_or(FALLBACK_GPU_BANDWIDTH);
            streaming_seconds += bytes / (bandwidth * GPU_DECODE_BANDWIDTH_EFFICIENCY);
            fixed_seconds += f64::from(layers_per_device[slot]) * GPU_SECONDS_PER_LAYER;
        }
    }
    let decode_seconds = streaming_seconds + fixed_seconds;

    // Prefill: 2 operations per matrix parameter per token, split by where the layers run.
    let parameters = model.matmul_parameters_per_prompt_token();
    let layer_count = f64::from(model.n_layer.max(1));
    let mut prefill_seconds_per_token = 0.0;
    for (slot, layers) in layers_per_device.iter().enumerate() {
        let share = f64::from(*layers) / layer_count;
        if share == 0.0 {
            continue;
        }
        let flops = if slot == 0 {
            CPU_PREFILL_FLOPS_PER_CORE * f64::from(profile.threads())
        } else {
            profile.gpus[slot - 1]
                .f32_flops_per_second
                .unwrap_or(FALLBACK_GPU_FLOPS)
                * GPU_PREFILL_FLOPS_EFFICIENCY
        };
        prefill_seconds_per_token += 2.0 * parameters * share / flops;
    }

    SpeedPrediction {
        decode_tokens_per_second: 1.0 / decode_seconds.max(1e-9),
        prefill_tokens_per_second: 1.0 / prefill_seconds_per_token.max(1e-12),
        decode_position,
        bytes_read_per_token: bytes_per_device.iter().sum(),
        bandwidth_bound_share: streaming_seconds / decode_seconds.max(1e-12),
    }
}
