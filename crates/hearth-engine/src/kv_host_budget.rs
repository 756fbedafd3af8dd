//! The host tier's budget for a load (KV states of sequences pushed out of their slots, kept
//! in system memory): the load's own figure when it names one (tests, benchmarks), else the
//! fit planner's for this model, these parameters and the memory free right before the load
//! (`hearth_probe::kv_host`: a share of what the plan leaves free), the figure `hearth fit`
//! prints. It is resolved once per load, before the memory ceiling is set, so the ceiling
//! leaves room for it.

use std::path::Path;

use hearth_protocol::LoadParams;

/// The budget when the planner cannot plan the file (it will say why at load): small enough
/// for any machine that runs a model, and still a few short conversations.
pub const FALLBACK_KV_HOST_BUDGET_BYTES: u64 = 256 << 20;

/// `params` with `kv_host_budget_bytes` set: kept when given, else planned.
pub fn resolved(path: &Path, params: LoadParams) -> LoadParams {
    if params.kv_host_budget_bytes.is_some() {
        return params;
    }
    let planned = match crate::offload::load_plan(path, &params) {
        Ok(plan) => {
            let budget = plan.kv_host;
            tracing::info!(
                budget_mib = budget.budget_bytes >> 20,
                headroom_mib = budget.headroom_bytes >> 20,
                full_sequences = budget.full_sequences(),
                "the planner keeps KV states of pushed-out sequences in host memory"
            );
            budget.budget_bytes
        }
        Err(reason) => {
            tracing::warn!(
                "no plan for the KV cache's host tier ({reason}); it keeps {} MiB",
                FALLBACK_KV_HOST_BUDGET_BYTES >> 20
            );
            FALLBACK_KV_HOST_BUDGET_BYTES
        }
    };
    LoadParams {
        kv_host_budget_bytes: Some(planned),
        ..params
    }
}
