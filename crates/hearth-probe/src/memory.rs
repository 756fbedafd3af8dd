//! What llama.cpp allocates for a model and context, per device, computed from the model's
//! facts the way llama.cpp sizes its buffers (the version Hearth links, `llama-cpp-sys-2`
//! 0.1.161). Each rule names the llama.cpp code it follows; `docs/planner.md` has the
//! derivations and the measurements that check them.

use hearth_protocol::{FlashAttention, KvCacheType, LoadParams};
use serde::{Deserialize, Serialize};

use crate::model::{ModelFacts, TensorRole};
use crate::profile::{CpuProfile, DeviceProfile, GpuKind, MIB};

/// llama.cpp pads the context (and every KV cache) to a multiple of 256 cells
/// (`llama_context`: `GGML_PAD(n_ctx, 256)`; `llama_kv_cache_iswa`: SWA size padded the same).
pub const KV_CELL_PADDING: u64 = 256;
/// Bytes per element of the logits and the f32 activations.
const F32_BYTES: u64 = 4;
/// Bytes per element of the flash-attention mask (f16); without flash attention it is f32.
const F16_BYTES: u64 = 2;
/// Activation tensors of width `n_embd` per ubatch token that are live at the compute graph's
/// peak besides the logits. Measured (SmolLM2 and Gemma 3 on the CPU, every context and ubatch
/// size): 5 with flash attention, 6 without, each sometimes one more or one less where ggml's
/// allocator places the mask differently. With flash attention the planner takes the larger.
const PEAK_ACTIVATIONS_FLASH_ATTENTION: u64 = 6;
const PEAK_ACTIVATIONS_PLAIN_ATTENTION: u64 = 6;
/// Without flash attention the peak also holds 1536 bytes per ubatch token that do not
/// depend on the model's width (measured on both models: 0.75 MiB at 512 tokens).
const PLAIN_ATTENTION_BYTES_PER_TOKEN: u64 = 1536;
/// A GPU backend's own memory besides llama.cpp's buffers (driver context, kernels, cuBLAS or
/// Metal library workspace). llama.cpp reports it as "unaccounted"; public reports put a CUDA
/// context at 250-500 MiB and Metal's at about 100 MiB.
const CUDA_RUNTIME_OVERHEAD_BYTES: u64 = 400 * MIB;
const METAL_RUNTIME_OVERHEAD_BYTES: u64 = 128 * MIB;
const OTHER_GPU_RUNTIME_OVERHEAD_BYTES: u64 = 256 * MIB;
/// The worker process itself on the host: code, the thread pool, the tokenizer's tables.
pub(crate) const HOST_PROCESS_OVERHEAD_BYTES: u64 = 48 * MIB;
/// Tokenizer memory per vocabulary entry (the token text, its score and type, lookup maps).
const HOST_BYTES_PER_VOCAB_ENTRY: u64 = 96;

/// Bytes of a KV cache row of `elements` values of `kv_cache_type` (ggml's `ggml_row_size`).
pub fn kv_row_bytes(kv_cache_type: KvCacheType, elements: u64) -> u64 {
    match kv_cache_type {
        KvCacheType::F16 => elements * 2,
        // 32 values per block: 34 bytes (q8_0) or 18 bytes (q4_0).
        KvCacheType::Q8_0 => elements.div_ceil(32) * 34,
        KvCacheType::Q4_0 => elements.div_ceil(32) * 18,
    }
}

/// The context parameters that decide memory, with llama.cpp's meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextConfig {
    /// Context length, all sequences together (the KV cache is unified).
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    /// Sequences (`n_seq_max`).
    pub n_parallel: u32,
    pub kv_cache_type: KvCacheType,
    /// Whether flash attention runs. Hearth's engine turns it on on the CPU (its `auto` with
    /// no GPU layers: the vendored kernel is batch-invariant and faster) and leaves `auto` to
    /// llama.cpp with GPU layers (on for CUDA, Metal and Vulkan).
    pub flash_attention: bool,
    /// One KV buffer shared by all sequences (`true`) or one stream of `n_ctx / n_parallel`
    /// cells per sequence (`false`, the engine's setting: [`hearth_protocol::KV_UNIFIED`]).
    pub kv_unified: bool,
    /// Full-size KV cache for sliding-window layers: `true` for the engine
    /// ([`hearth_protocol::SWA_FULL`], llama.cpp's default); `false` sizes those layers to the
    /// window.
    pub swa_full: bool,
    /// Most logits rows per ubatch; `None` means llama.cpp's default (`n_batch`).
    pub n_outputs_max: Option<u32>,
}

impl ContextConfig {
    /// What Hearth's engine creates for a CPU-only load of `n_ctx` with the default load
    /// parameters: the same defaults and settings (`hearth_protocol`'s [`LoadParams`],
    /// [`KV_UNIFIED`](hearth_protocol::KV_UNIFIED), [`SWA_FULL`](hearth_protocol::SWA_FULL),
    /// [`FlashAttention::for_offload`]) that the engine's context parameters come from.
    pub fn engine_defaults(n_ctx: u32) -> ContextConfig {
        let load = LoadParams::default();
        ContextConfig {
            n_ctx,
            n_batch: load.n_batch,
            n_ubatch: load.n_ubatch,
            n_parallel: load.n_parallel,
            kv_cache_type: load.kv_cache_type,
            flash_attention: load.flash_attention.for_offload(0) == FlashAttention::On,
            kv_unified: hearth_protocol::KV_UNIFIED,
            swa_full: hearth_protocol::SWA_FULL,
            n_outputs_max: None,
        }
    }

    /// KV streams: one per sequence unless the cache is unified.
    pub fn kv_streams(&self) -> u64 {
        if self.kv_unified {
            1
        } else {
            u64::from(self.n_parallel.max(1))
        }
    }

    /// Cells of one stream of the main KV cache (`llama_context`: `n_ctx` padded to 256, then
    /// split per sequence and padded again when not unified).
    pub fn kv_cells(&self) -> u64 {
        let n_ctx = u64::from(self.n_ctx.max(1)).next_multiple_of(KV_CELL_PADDING);
        if self.kv_unified {
            n_ctx
        } else {
            (n_ctx / self.kv_streams())
                .max(1)
                .next_multiple_of(KV_CELL_PADDING)
        }
    }

    /// The context llama.cpp really creates (all streams together).
    pub fn effective_n_ctx(&self) -> u64 {
        self.kv_cells() * self.kv_streams()
    }

    /// The batch llama.cpp uses: with causal attention no larger than the (unpadded) context.
    pub fn effective_n_batch(&self) -> u64 {
        u64::from(self.n_batch.min(self.n_ctx).max(1))
    }

    /// The physical batch: at most the logical batch.
    pub fn effective_n_ubatch(&self) -> u64 {
        u64::from(self.n_ubatch.max(1)).min(self.effective_n_batch())
    }

    /// Logits rows of the worst-case graph llama.cpp reserves (`sched_reserve`:
    /// `min(n_tokens, n_outputs_max)`).
    pub fn reserved_outputs(&self) -> u64 {
        let n_outputs_max = self
            .n_outputs_max
            .map(u64::from)
            .unwrap_or_else(|| self.effective_n_batch());
        self.effective_n_ubatch().min(n_outputs_max.max(1))
    }

    /// Cells of one stream of a sliding-window layer's KV cache (`llama_kv_cache_iswa`):
    /// `pad(min(cells, window * (n_seq if unified else 1) + n_ubatch), 256)`, or the full size
    /// with `swa_full`.
    pub fn sliding_kv_cells(&self, window: u64) -> u64 {
        if self.swa_full {
            return self.kv_cells();
        }
        let sequences_per_stream = if self.kv_unified {
            u64::from(self.n_parallel.max(1))
        } else {
            1
        };
        let needed = window * sequences_per_stream + self.effective_n_ubatch();
        self.kv_cells()
            .min(needed)
            .next_multiple_of(KV_CELL_PADDING)
    }
}

/// The name of system memory in [`DeviceMemory::device`] and [`crate::plan::DeviceBudget`].
pub const HOST_DEVICE: &str = "host";

/// Which layers go where: llama.cpp offloads the last `n_gpu_layers` repeating layers, and the
/// output layer too when `n_gpu_layers` exceeds the layer count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub n_gpu_layers: u32,
    /// Share of the offloaded layers per GPU (llama.cpp's `tensor_split`), summing to 1;
    /// empty for one GPU or none.
    pub gpu_split: Vec<f64>,
}

impl Placement {
    pub fn cpu_only() -> Placement {
        Placement {
            n_gpu_layers: 0,
            gpu_split: Vec::new(),
        }
    }
}

/// Memory of one device, by purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceMemory {
    /// `host` for system memory, else the GPU's name.
    pub device: String,
    /// Model weights (for the host: the mapped file's tensors plus CPU repacked copies).
    pub weights_bytes: u64,
    /// Weights llama.cpp's CPU backend copies into an interleaved layout (`CPU_REPACK`),
    /// included in `weights_bytes`.
    pub repacked_weights_bytes: u64,
    pub kv_cache_bytes: u64,
    /// Logits and embeddings llama.cpp keeps for the caller (`output buffer`).
    pub output_bytes: u64,
    /// Scratch of the compute graph (`compute buffer`).
    pub compute_bytes: u64,
    /// What is not a llama.cpp buffer: the GPU runtime's context, the process, the tokenizer.
    pub overhead_bytes: u64,
}

impl DeviceMemory {
    fn empty(device: &str) -> DeviceMemory {
        DeviceMemory {
            device: device.to_string(),
            weights_bytes: 0,
            repacked_weights_bytes: 0,
            kv_cache_bytes: 0,
            output_bytes: 0,
            compute_bytes: 0,
            overhead_bytes: 0,
        }
    }

    /// What llama.cpp allocates in buffers: weights, KV cache, output, compute. This is what
    /// `hearth fit --verify` compares with llama.cpp's own report.
    pub fn buffers_bytes(&self) -> u64 {
        self.weights_bytes + self.kv_cache_bytes + self.output_bytes + self.compute_bytes
    }

    /// Everything, overhead included: what must fit the device's budget.
    pub fn total_bytes(&self) -> u64 {
        self.buffers_bytes() + self.overhead_bytes
    }
}

/// Whether llama.cpp's CPU backend repacks a tensor of this type and row count on this CPU
/// (`ggml_repack_get_optimal_repack_type` in ggml-cpu/repack.cpp). The repacked copy is as
/// large as the original and comes on top of the mapped file.
pub fn cpu_repacks(cpu: &CpuProfile, ggml_type: &str, rows: u64) -> bool {
    let avx2 = cpu.has("avx2");
    let avx512 = cpu.has("avx512f");
    let neon = cpu.has("neon");
    let dotprod = neon && cpu.has("dotprod");
    let i8mm = neon && cpu.has("i8mm");
    match ggml_type {
        "q4_0" => (avx2 && rows.is_multiple_of(8)) || ((i8mm || dotprod) && rows.is_multiple_of(4)),
        "q4_K" => (avx2 || i8mm || dotprod) && rows.is_multiple_of(8),
        "q5_K" | "q6_K" => (i8mm || dotprod) && rows.is_multiple_of(8),
        "q2_K" => avx512 && rows.is_multiple_of(8),
        "iq4_nl" | "mxfp4" => {
            (avx2 && rows.is_multiple_of(8)) || (dotprod && rows.is_multiple_of(4))
        }
        "q8_0" => (i8mm || dotprod) && rows.is_multiple_of(4),
        _ => false,
    }
}

/// Bytes of the KV cache of layer `layer` (K and V rows for every cell).
pub fn layer_kv_bytes(model: &ModelFacts, config: &ContextConfig, layer: usize) -> u64 {
    let n_head_kv = model.n_head_kv.get(layer).copied().unwrap_or(0);
    if n_head_kv == 0 {
        return 0;
    }
    let cells = match &model.sliding_window {
        Some(swa) if model.layer_uses_window(layer) => config.sliding_kv_cells(swa.window),
        _ => config.kv_cells(),
    };
    let k_row = kv_row_bytes(config.kv_cache_type, n_head_kv * model.head_dim_k);
    let v_row = kv_row_bytes(config.kv_cache_type, n_head_kv * model.head_dim_v);
    cells * config.kv_streams() * (k_row + v_row)
}

/// The distinct KV caches a layer's attention mask spans: the full cache, and the window-sized
/// one when the model mixes sliding and global layers. Each gets its own mask input.
fn attention_mask_cells(model: &ModelFacts, config: &ContextConfig) -> Vec<u64> {
    match &model.sliding_window {
        None => vec![config.kv_cells()],
        Some(swa) => {
            let any_global = swa.layer_uses_window.iter().any(|uses| !uses);
            let mut cells = vec![config.sliding_kv_cells(swa.window)];
            if any_global {
                cells.push(config.kv_cells());
            }
            cells
        }
    }
}

/// Compute-buffer bytes of one device that runs some layers (and maybe the output layer).
///
/// ggml reserves the worst-case graph (a full ubatch, every KV cell visible) and reuses memory
/// between tensors whose lifetimes do not overlap, so the buffer is the graph's peak: the mask
/// inputs (live throughout), a few activations of width `n_embd`, and the larger of the
/// logits (when this device computes them) and, without flash attention, one layer's full
/// attention score matrix.
fn compute_bytes(
    model: &ModelFacts,
    config: &ContextConfig,
    computes_logits: bool,
    runs_layers: bool,
) -> u64 {
    let n_tokens = config.effective_n_ubatch();
    let mask_element_bytes = if config.flash_attention {
        F16_BYTES
    } else {
        F32_BYTES
    };
    let masks: u64 = attention_mask_cells(model, config)
        .iter()
        .map(|cells| cells * n_tokens * mask_element_bytes)
        .sum();
    let activations = if config.flash_attention {
        PEAK_ACTIVATIONS_FLASH_ATTENTION * model.n_embd * n_tokens * F32_BYTES
    } else {
        PEAK_ACTIVATIONS_PLAIN_ATTENTION * model.n_embd * n_tokens * F32_BYTES
            + PLAIN_ATTENTION_BYTES_PER_TOKEN * n_tokens
    };
    let logits = if computes_logits {
        model.n_vocab * config.reserved_outputs() * F32_BYTES
    } else {
        0
    };
    let attention_scores = if config.flash_attention || !runs_layers {
        0
    } else {
        let n_head = model.n_head.iter().copied().max().unwrap_or(0);
        config.kv_cells() * n_tokens * n_head * F32_BYTES
    };
    if !runs_layers && !computes_logits {
        return 0;
    }
    masks + activations + logits.max(attention_scores)
}

fn runtime_overhead(backend: &str, kind: GpuKind) -> u64 {
    match (backend, kind) {
        ("CUDA", _) | ("ROCm", _) | ("HIP", _) => CUDA_RUNTIME_OVERHEAD_BYTES,
        ("Metal", _) => METAL_RUNTIME_OVERHEAD_BYTES,
        _ => OTHER_GPU_RUNTIME_OVERHEAD_BYTES,
    }
}

/// Which GPU (index into `profile.gpus`) runs repeating layer `layer`, or `None` for the CPU.
/// Follows llama.cpp's layer split: the offloaded layers are the last `n_gpu_layers`, cut into
/// consecutive runs by the cumulative split.
pub fn layer_device(
    model: &ModelFacts,
    placement: &Placement,
    gpu_count: usize,
    layer: u32,
) -> Option<usize> {
    if gpu_count == 0 {
        return None;
    }
    let n_layer = model.n_layer;
    let offloaded = placement.n_gpu_layers.min(n_layer + 1);
    let first_gpu_layer = n_layer.saturating_sub(offloaded);
    // Index `n_layer` is the output layer: offloaded only when `n_gpu_layers > n_layer`.
    if layer < first_gpu_layer || (layer >= n_layer && placement.n_gpu_layers <= n_layer) {
        return None;
    }
    if gpu_count == 1 || placement.gpu_split.len() < 2 {
        return Some(0);
    }
    // llama.cpp splits the range [first_gpu_layer, n_layer + 1) (the output counts as a
    // layer) by the cumulative fractions.
    let span = f64::from(n_layer + 1 - first_gpu_layer);
    let position = f64::from(layer - first_gpu_layer) / span;
    let total: f64 = placement
        .gpu_split
        .iter()
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let mut cumulative = 0.0;
    for (index, share) in placement.gpu_split.iter().enumerate().take(gpu_count) {
        cumulative += share / total;
        if position < cumulative - 1e-9 {
            return Some(index);
        }
    }
    Some(gpu_count.min(placement.gpu_split.len()) - 1)
}

/// The memory llama.cpp will allocate for `model` with `config` and `placement` on `profile`,
/// host first, then each GPU that gets anything.
pub fn memory_breakdown(
    model: &ModelFacts,
    config: &ContextConfig,
    placement: &Placement,
    profile: &DeviceProfile,
) -> Vec<DeviceMemory> {
    let gpu_count = profile.gpus.len();
    let mut host = DeviceMemory::empty(HOST_DEVICE);
    let mut gpus: Vec<DeviceMemory> = profile
        .gpus
        .iter()
        .map(|gpu| DeviceMemory::empty(&gpu.name))
        .collect();
    let output_device = layer_device(model, placement, gpu_count, model.n_layer);
    let any_gpu_layers =
        (0..model.n_layer).any(|layer| layer_device(model, placement, gpu_count, layer).is_some());

    // Weights: each tensor where its layer runs. The token embedding stays on the host
    // (llama.cpp's input layer is always the CPU); the output layer goes with `output_device`.
    for tensor in &model.tensors {
        let device = match tensor.role {
            TensorRole::TokenEmbedding | TensorRole::Other => None,
            TensorRole::Output => output_device,
            TensorRole::Layer { layer } | TensorRole::Experts { layer } => {
                layer_device(model, placement, gpu_count, layer)
            }
        };
        match device.and_then(|index| gpus.get_mut(index)) {
            Some(gpu) => gpu.weights_bytes += tensor.bytes,
            None => {
                host.weights_bytes += tensor.bytes;
                let is_matrix_product_weight = matches!(
                    tensor.role,
                    TensorRole::Layer { .. } | TensorRole::Experts { .. } | TensorRole::Output
                ) && tensor.dimensions >= 2;
                if is_matrix_product_weight
                    && cpu_repacks(&profile.cpu, &tensor.ggml_type, tensor.rows)
                {
                    host.repacked_weights_bytes += tensor.bytes;
                }
            }
        }
    }
    // A tied LM head is the token embedding, which never leaves the host; with the output
    // layer offloaded llama.cpp puts a copy of it on the GPU.
    if model.output_is_tied() {
        if let Some(gpu) = output_device.and_then(|index| gpus.get_mut(index)) {
            gpu.weights_bytes += model.lm_head_bytes();
        }
    }
    host.weights_bytes += host.repacked_weights_bytes;

    // KV cache: each layer's on its layer's device (llama.cpp's default `offload_kqv`).
    for layer in 0..model.n_layer {
        let bytes = layer_kv_bytes(model, config, layer as usize);
        match layer_device(model, placement, gpu_count, layer).and_then(|index| gpus.get_mut(index))
        {
            Some(gpu) => gpu.kv_cache_bytes += bytes,
            None => host.kv_cache_bytes += bytes,
        }
    }

    // Output buffer: one logits row per sequence, on the host (`output_reserve(n_seq_max)`).
    host.output_bytes = model.n_vocab * F32_BYTES * u64::from(config.n_parallel.max(1));

    // Compute buffers.
    let host_runs_layers =
        (0..model.n_layer).any(|layer| layer_device(model, placement, gpu_count, layer).is_none());
    if any_gpu_layers {
        for (index, gpu) in gpus.iter_mut().enumerate() {
            let runs_layers = (0..model.n_layer)
                .any(|layer| layer_device(model, placement, gpu_count, layer) == Some(index));
            gpu.compute_bytes =
                compute_bytes(model, config, output_device == Some(index), runs_layers);
        }
        // The host stages the inputs (embeddings, masks) for the GPUs, and runs what is left.
        let n_tokens = config.effective_n_ubatch();
        let staging = model.n_embd * n_tokens * F32_BYTES;
        host.compute_bytes = staging
            + if host_runs_layers || output_device.is_none() {
                compute_bytes(model, config, output_device.is_none(), host_runs_layers)
            } else {
                0
            };
    } else {
        host.compute_bytes = compute_bytes(model, config, true, true);
    }

    // Overheads that are not llama.cpp buffers.
    host.overhead_bytes = HOST_PROCESS_OVERHEAD_BYTES + model.n_vocab * HOST_BYTES_PER_VOCAB_ENTRY;
    for (gpu_memory, gpu) in gpus.iter_mut().zip(&profile.gpus) {
        if gpu_memory.buffers_bytes() > 0 {
            gpu_memory.overhead_bytes = runtime_overhead(&gpu.backend, gpu.kind);
        }
    }

    let mut devices = vec![host];
    devices.extend(gpus.into_iter().filter(|gpu| gpu.total_bytes() > 0));
    devices
}

#[cfg(test)]
mod tests;
