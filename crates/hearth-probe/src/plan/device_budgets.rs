//! The memory each device offers a plan: budgets (free memory minus the stated margins, or one
//! pool with unified memory), a plan's use of them, and the split of offloaded layers between
//! GPUs.

use super::{
    DeviceBudget, GPU_MARGIN_MIN_BYTES, GPU_MARGIN_SHARE, HOST_MARGIN_MIN_BYTES, HOST_MARGIN_SHARE,
};
use crate::memory::{DeviceMemory, HOST_DEVICE};
use crate::profile::DeviceProfile;

/// The one budget of a machine whose GPU shares system memory.
pub const UNIFIED_POOL: &str = "unified";

impl DeviceBudget {
    /// System memory's budget: the host's, or the pool a unified-memory GPU shares.
    pub fn is_host_pool(&self) -> bool {
        self.device == HOST_DEVICE || self.device == UNIFIED_POOL
    }
}

/// The budgets of `profile`: one per device, or one shared pool with unified memory.
pub fn budgets(profile: &DeviceProfile) -> Vec<DeviceBudget> {
    let host_margin =
        HOST_MARGIN_MIN_BYTES.max((profile.memory.total_bytes as f64 * HOST_MARGIN_SHARE) as u64);
    let budget = |device: &str, free: u64, margin: u64| DeviceBudget {
        device: device.to_string(),
        free_bytes: free,
        margin_bytes: margin,
        budget_bytes: free.saturating_sub(margin),
        planned_bytes: 0,
    };
    if profile.unified_memory {
        // The GPU's "free" is the share of system memory it may use (a cap, already short of
        // the whole); the OS's margin comes out of what the OS says is available. The pool is
        // the smaller of the two, so a GPU capped well below the available memory (lavapipe's
        // 2 GiB) is not also charged the host's margin.
        let gpu_cap = profile
            .gpus
            .iter()
            .map(|gpu| gpu.memory_free_bytes)
            .min()
            .unwrap_or(u64::MAX);
        let available = profile.memory.available_bytes;
        let free = gpu_cap.min(available);
        let pool = gpu_cap.min(available.saturating_sub(host_margin));
        return vec![budget(UNIFIED_POOL, free, free - pool)];
    }
    let mut budgets = vec![budget(
        HOST_DEVICE,
        profile.memory.available_bytes,
        host_margin,
    )];
    for gpu in &profile.gpus {
        let margin =
            GPU_MARGIN_MIN_BYTES.max((gpu.memory_total_bytes as f64 * GPU_MARGIN_SHARE) as u64);
        budgets.push(budget(&gpu.name, gpu.memory_free_bytes, margin));
    }
    budgets
}

/// `budgets` with `planned_bytes` filled in from `memory`; `None` when something exceeds its
/// budget.
pub(crate) fn fill_budgets(
    memory: &[DeviceMemory],
    budgets: &[DeviceBudget],
    unified: bool,
) -> Option<Vec<DeviceBudget>> {
    let mut filled = budgets.to_vec();
    if unified {
        let total: u64 = memory.iter().map(DeviceMemory::total_bytes).sum();
        filled[0].planned_bytes = total;
    } else {
        for device in memory {
            let budget = filled
                .iter_mut()
                .find(|budget| budget.device == device.device)?;
            budget.planned_bytes = device.total_bytes();
        }
    }
    filled
        .iter()
        .all(|budget| budget.planned_bytes <= budget.budget_bytes)
        .then_some(filled)
}

/// Offloaded-layer shares per GPU, proportional to their budgets (llama.cpp's default split
/// is proportional to free memory).
pub(super) fn gpu_split(budgets: &[DeviceBudget], profile: &DeviceProfile) -> Vec<f64> {
    if profile.gpus.len() < 2 {
        return Vec::new();
    }
    let gpu_budgets: Vec<f64> = profile
        .gpus
        .iter()
        .map(|gpu| {
            budgets
                .iter()
                .find(|budget| budget.device == gpu.name)
                .map_or(0.0, |budget| budget.budget_bytes as f64)
        })
        .collect();
    let total: f64 = gpu_budgets.iter().sum::<f64>().max(1.0);
    gpu_budgets.iter().map(|budget| budget / total).collect()
}
