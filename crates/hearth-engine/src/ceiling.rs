//! The worker process's memory ceiling: on Linux, the soft `RLIMIT_DATA`, set before each model
//! load from the fit planner's figures for that model, so a runaway allocation (a chat template
//! or grammar that builds something huge, a leak) ends the worker, which its requests see as a
//! crash, instead of exhausting the machine.
//!
//! `RLIMIT_DATA` and not `RLIMIT_AS`: since Linux 4.7 `RLIMIT_DATA` counts the private writable
//! mappings (the heap, anonymous `mmap`s: llama.cpp's KV cache, compute buffers and repacked
//! weights, thread stacks), and not file mappings (the memory-mapped model file) nor address
//! space reserved without access (GPU drivers reserve tens of GB that way: CUDA's unified
//! addressing, Vulkan drivers), which `RLIMIT_AS` counts and would refuse. Only the soft limit
//! is set, so the next model's load may raise it again. Elsewhere nothing is set.
//!
//! Only the worker process sets it ([`crate::EngineHandle::spawn_with_memory_ceiling`]); an
//! engine run in-process (tests) leaves its process alone.

use std::path::Path;

use hearth_probe::{ContextConfig, Placement};
use hearth_protocol::LoadParams;

/// The lowest ceiling: a small model's worker still has room for llama.cpp's threads (each
/// stack counts), the tokenizer, the backends' libraries and a 16 MB template render.
pub const MIN_MEMORY_CEILING_BYTES: u64 = 4 << 30;

/// Added to twice the planned need: room for what the plan does not see (allocator slack,
/// a GPU runtime's host-side buffers, grammar threads, large requests).
pub const MEMORY_CEILING_MARGIN_BYTES: u64 = 2 << 30;

/// The ceiling for a model whose file is `file_bytes` and whose planned host memory (weights,
/// KV cache, compute and output buffers, overhead, all on the CPU: the most the host can need)
/// is `planned_host_bytes`, if the planner could read the file (else twice the file): twice
/// the need, plus the KV cache's host tier (`kv_host_budget_bytes`: a budget the tier keeps
/// to, so counted once), plus [`MEMORY_CEILING_MARGIN_BYTES`], never below
/// [`MIN_MEMORY_CEILING_BYTES`]. The need counts the weights although a mapped file does not
/// count towards the limit, for the loads that copy them (no mmap, repacking, an offload's
/// host copies).
pub fn memory_ceiling(
    file_bytes: u64,
    planned_host_bytes: Option<u64>,
    kv_host_budget_bytes: u64,
) -> u64 {
    let need = planned_host_bytes
        .unwrap_or(file_bytes.saturating_mul(2))
        .max(file_bytes);
    need.saturating_mul(2)
        .saturating_add(kv_host_budget_bytes)
        .saturating_add(MEMORY_CEILING_MARGIN_BYTES)
        .max(MIN_MEMORY_CEILING_BYTES)
}

/// The planner's host memory for the model at `path` loaded with `params` entirely on the CPU.
pub fn planned_host_bytes(path: &Path, params: &LoadParams) -> Option<u64> {
    let variant = hearth_probe::variant_from_file(path).ok()?;
    let config = ContextConfig {
        n_parallel: params.n_parallel.max(1),
        n_batch: params.n_batch,
        n_ubatch: params.n_ubatch,
        kv_cache_type: params.kv_cache_type,
        ..ContextConfig::engine_defaults(params.n_ctx)
    };
    let profile = hearth_probe::probe::offload_profile(&[]);
    let memory = hearth_probe::memory::memory_breakdown(
        &variant.facts,
        &config,
        &Placement::cpu_only(),
        &profile,
    );
    Some(memory.iter().map(|device| device.total_bytes()).sum())
}

/// Sets the ceiling for the model about to be loaded from `path`, and logs it.
pub fn set_for_model(path: &Path, params: &LoadParams) {
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let ceiling = memory_ceiling(
        file_bytes,
        planned_host_bytes(path, params),
        params.kv_host_budget_bytes.unwrap_or(0),
    );
    match set_data_limit(ceiling) {
        Ok(Some(set)) => tracing::info!(
            ceiling_mib = set >> 20,
            "worker memory ceiling (RLIMIT_DATA) set"
        ),
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "could not set the worker's memory ceiling"),
    }
}

/// Sets the soft `RLIMIT_DATA` to `bytes` (at most the hard limit); returns what was set.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn set_data_limit(bytes: u64) -> std::io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` and `setrlimit` only read and write the `rlimit` passed by reference,
    // which lives on this stack frame for both calls; they touch no other memory.
    let set = unsafe {
        if libc::getrlimit(libc::RLIMIT_DATA, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit.rlim_cur = bytes.min(limit.rlim_max);
        libc::setrlimit(libc::RLIMIT_DATA, &limit)
    };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some(limit.rlim_cur))
}

/// No ceiling where `RLIMIT_DATA` does not count what Linux's does.
#[cfg(not(target_os = "linux"))]
pub fn set_data_limit(_bytes: u64) -> std::io::Result<Option<u64>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_ceiling_is_generous_and_never_below_the_floor() {
        // SmolLM2-135M: a 92 MB file, about 700 MB planned.
        assert_eq!(
            memory_ceiling(92 << 20, Some(700 << 20), 0),
            MIN_MEMORY_CEILING_BYTES
        );
        // A 4.4 GB 8B model planned at 6 GiB: twice that plus the margin.
        assert_eq!(memory_ceiling(4_400_000_000, Some(6 * GIB), 0), 14 * GIB);
        // Without a plan, from the file alone: twice the file, twice over, plus the margin.
        assert_eq!(memory_ceiling(4 * GIB, None, 0), 18 * GIB);
        // A plan smaller than the file still counts the whole file.
        assert_eq!(memory_ceiling(4 * GIB, Some(GIB), 0), 10 * GIB);
        assert_eq!(memory_ceiling(u64::MAX, None, 0), u64::MAX);
        // The KV cache's host tier comes on top, once: the tier keeps to its budget.
        assert_eq!(
            memory_ceiling(4_400_000_000, Some(6 * GIB), 4 * GIB),
            18 * GIB
        );
    }
}
