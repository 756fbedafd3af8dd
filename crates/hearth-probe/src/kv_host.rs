//! The host tier of the KV cache: how much system memory may hold the KV states of
//! conversations pushed out of their slots (more conversations than slots, an evicted slot),
//! so that they come back without a prefill and without a disk read.
//!
//! The budget is a share of what the plan leaves free on the host: [`HEADROOM_SHARE`] of the
//! host budget (free memory minus the planner's margin) after the plan's own weights, KV
//! cache, buffers and overheads, at most [`MAX_KV_HOST_BUDGET_BYTES`]. A quarter, not all of
//! it, because the headroom is measured once, at load, while the user's other programs keep
//! allocating; and the states are only a cache (the disk tier and a fresh prefill stand
//! behind them), so running short of it costs time, never an answer. The budget is a ceiling:
//! memory is taken only as states are saved.

use serde::{Deserialize, Serialize};

use crate::memory::DeviceMemory;
use crate::plan::DeviceBudget;
use crate::profile::GIB;

/// The share of the host headroom the host tier may use.
pub const HEADROOM_SHARE: f64 = 0.25;
/// The most the host tier holds, however much memory is free: past this, the least recently
/// used states are older than anyone waits for, and the disk tier keeps them anyway.
pub const MAX_KV_HOST_BUDGET_BYTES: u64 = 4 * GIB;

/// The host tier's budget, and what it means for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvHostBudget {
    /// The most host memory the saved states may take.
    pub budget_bytes: u64,
    /// What the plan leaves free in the host's budget, of which the tier takes a share.
    pub headroom_bytes: u64,
    /// One sequence's KV state at its full context (the largest a saved state gets).
    pub full_sequence_bytes: u64,
}

impl KvHostBudget {
    /// How many sequences at their full context the budget holds (shorter ones: more).
    pub fn full_sequences(&self) -> u64 {
        self.budget_bytes
            .checked_div(self.full_sequence_bytes)
            .unwrap_or(0)
    }
}

/// The budget for a plan whose memory is `memory` within `budgets` (filled), serving
/// `n_parallel` sequences.
pub fn kv_host_budget(
    memory: &[DeviceMemory],
    budgets: &[DeviceBudget],
    n_parallel: u32,
) -> KvHostBudget {
    let headroom_bytes = budgets
        .iter()
        .find(|budget| budget.is_host_pool())
        .map(|budget| budget.budget_bytes.saturating_sub(budget.planned_bytes))
        .unwrap_or(0);
    let kv_cache_bytes: u64 = memory.iter().map(|device| device.kv_cache_bytes).sum();
    KvHostBudget {
        budget_bytes: budget_from_headroom(headroom_bytes),
        headroom_bytes,
        full_sequence_bytes: kv_cache_bytes / u64::from(n_parallel.max(1)),
    }
}

/// [`HEADROOM_SHARE`] of `headroom_bytes`, at most [`MAX_KV_HOST_BUDGET_BYTES`].
pub fn budget_from_headroom(headroom_bytes: u64) -> u64 {
    ((headroom_bytes as f64 * HEADROOM_SHARE) as u64).min(MAX_KV_HOST_BUDGET_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::MIB;

    fn pool(device: &str, budget_bytes: u64, planned_bytes: u64) -> DeviceBudget {
        DeviceBudget {
            device: device.to_string(),
            free_bytes: budget_bytes + GIB,
            margin_bytes: GIB,
            budget_bytes,
            planned_bytes,
        }
    }

    fn kv_on(device: &str, kv_cache_bytes: u64) -> DeviceMemory {
        DeviceMemory {
            device: device.to_string(),
            weights_bytes: GIB,
            repacked_weights_bytes: 0,
            kv_cache_bytes,
            output_bytes: 0,
            compute_bytes: 0,
            overhead_bytes: 0,
        }
    }

    #[test]
    fn a_quarter_of_the_headroom_goes_to_the_host_tier() {
        let budget = kv_host_budget(
            &[kv_on("host", 400 * MIB)],
            &[pool("host", 6 * GIB, 2 * GIB)],
            2,
        );
        assert_eq!(budget.headroom_bytes, 4 * GIB);
        assert_eq!(budget.budget_bytes, GIB);
        assert_eq!(budget.full_sequence_bytes, 200 * MIB);
        assert_eq!(budget.full_sequences(), 5);
    }

    #[test]
    fn a_large_machine_is_capped_and_a_full_one_keeps_nothing() {
        assert_eq!(budget_from_headroom(100 * GIB), MAX_KV_HOST_BUDGET_BYTES);
        let full = kv_host_budget(&[kv_on("host", MIB)], &[pool("host", GIB, GIB)], 1);
        assert_eq!((full.budget_bytes, full.full_sequences()), (0, 0));
        // A plan over its budget (the planner's best failure) is not negative headroom.
        let over = kv_host_budget(&[kv_on("host", MIB)], &[pool("host", GIB, 2 * GIB)], 1);
        assert_eq!(over.headroom_bytes, 0);
    }

    #[test]
    fn the_host_pool_is_the_host_or_the_unified_pool_never_a_gpu() {
        // The KV cache on the GPU still saves to host memory: the GPU's headroom is not it.
        let discrete = kv_host_budget(
            &[kv_on("host", 0), kv_on("CUDA0", 800 * MIB)],
            &[
                pool("host", 8 * GIB, 4 * GIB),
                pool("CUDA0", 20 * GIB, 4 * GIB),
            ],
            1,
        );
        assert_eq!(discrete.headroom_bytes, 4 * GIB);
        assert_eq!(discrete.full_sequence_bytes, 800 * MIB);
        let unified = kv_host_budget(
            &[kv_on("unified", 800 * MIB)],
            &[pool("unified", 12 * GIB, 4 * GIB)],
            4,
        );
        assert_eq!(unified.budget_bytes, 2 * GIB);
        assert_eq!(unified.full_sequences(), 10);
    }
}
