//! Speculative decoding in the plan: whether a draft model fits beside the planned model, and
//! the decode speedup it is predicted to bring.
//!
//! The engine loads the draft in the same worker, where the model goes (fully offloaded with
//! it, or on the CPU), with a context of the same size, so the draft costs its weights, its
//! own KV cache for the same per-sequence context, its output and compute buffers, and its
//! tokenizer; the process and the GPU runtime are already counted by the model's plan.
//!
//! With `k` guesses per step and an acceptance rate `α` (each guess accepted with probability
//! `α`, the first rejection ending the step), a verify step yields `(1 − α^(k+1)) / (1 − α)`
//! tokens. It costs one decode step plus `k` times the cost of verifying one more token, plus
//! `k` draft decodes, each the draft's predicted time per token over the model's (bytes read
//! and the fixed per-layer time of the planner's speed model). The speedup is the tokens per
//! step over that cost, at the best `k` up to the engine's most guesses per step; below 1,
//! speculation is not advised for this machine.

use serde::{Deserialize, Serialize};

use crate::memory::{memory_breakdown, DeviceMemory, Placement, HOST_PROCESS_OVERHEAD_BYTES};
use crate::model::ModelFacts;
use crate::plan::{fill_budgets, DeviceBudget, Offload, Plan};
use crate::profile::DeviceProfile;
use crate::speed::predict_speed;

/// The acceptance rate assumed when none was measured: llama.cpp's draft pairs of one family
/// accept most guesses on chat text, fewer on open-ended prose (`hearth bench --draft-model`
/// measures it, `acceptance_rate`).
pub const PRIOR_ACCEPTANCE_RATE: f64 = 0.7;
/// Cost of verifying one more guessed token in a step, in one-token decode steps, on the CPU:
/// measured on the reference 2-core machine by `scripts/bench-speculative` (README, n-gram on
/// SmolLM2 Q4_1: a step verifying 6.0 guesses cost 3.18 one-token steps, (3.18 − 1) / 6.0).
/// The CPU computes a verify batch, it does not only stream the weights.
pub const CPU_VERIFY_COST_PER_GUESS: f64 = 0.36;

/// Where the acceptance rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcceptanceSource {
    /// Given by the user (`hearth fit --draft-acceptance`, from `hearth bench`'s
    /// `acceptance_rate`).
    Given,
    /// Measured on this machine for this model and draft pair: tokens per decode step of
    /// the answers that speculated with it, turned into a per-token rate by
    /// [`hearth_protocol::acceptance_from_tokens_per_step`].
    Measured,
    /// [`PRIOR_ACCEPTANCE_RATE`].
    Prior,
}

/// Where the cost of verifying a guess came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyCostSource {
    /// [`CPU_VERIFY_COST_PER_GUESS`], measured on the reference machine.
    MeasuredCpu,
    /// The planner's predicted decode time per token over its prefill time per token: a GPU
    /// verifies a few tokens in about the time of one.
    Predicted,
}

/// The acceptance rate to plan with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Acceptance {
    pub rate: f64,
    pub source: AcceptanceSource,
}

impl Acceptance {
    /// A rate measured on this machine (clamped to 0..=1).
    pub fn measured(rate: f64) -> Acceptance {
        Acceptance {
            rate: rate.clamp(0.0, 1.0),
            source: AcceptanceSource::Measured,
        }
    }

    /// `measured` when given (clamped to 0..=1), else the prior.
    pub fn from_measurement(measured: Option<f64>) -> Acceptance {
        match measured {
            Some(rate) => Acceptance {
                rate: rate.clamp(0.0, 1.0),
                source: AcceptanceSource::Given,
            },
            None => Acceptance {
                rate: PRIOR_ACCEPTANCE_RATE,
                source: AcceptanceSource::Prior,
            },
        }
    }
}

/// The draft model beside a plan: its memory, whether it fits, and its predicted gain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftPlan {
    /// The draft's memory per device (weights, its KV cache, output, compute, tokenizer).
    pub memory: Vec<DeviceMemory>,
    /// What the draft adds over the model's plan, all devices together.
    pub extra_bytes: u64,
    /// The budgets with the model and the draft planned together.
    pub budgets: Vec<DeviceBudget>,
    /// Whether the model and the draft fit the budgets together.
    pub fits: bool,
    pub acceptance_rate: f64,
    pub acceptance_source: AcceptanceSource,
    /// The guesses per step the speedup is predicted at (the best up to the engine's most).
    pub draft_tokens: u32,
    /// Tokens a verify step yields at that many guesses.
    pub tokens_per_step: f64,
    /// Verifying one more guessed token, in one-token decode steps.
    pub verify_cost_per_guess: f64,
    pub verify_cost_source: VerifyCostSource,
    /// The draft's predicted time per token over the model's.
    pub draft_cost_per_guess: f64,
    /// Bytes the draft reads per guessed token.
    pub draft_bytes_read_per_token: f64,
    /// Predicted decode tokens/s with speculation over without.
    pub predicted_speedup: f64,
    /// Whether the draft fits and the predicted speedup is above 1.
    pub advised: bool,
}

pub use hearth_protocol::expected_tokens_per_step;

/// Decode speedup of speculation with `draft_tokens` guesses per step, each guess costing
/// `draft_cost_per_guess` to propose and `verify_cost_per_guess` to verify (in one-token
/// decode steps).
pub fn predicted_speedup(
    acceptance: f64,
    draft_tokens: u32,
    verify_cost_per_guess: f64,
    draft_cost_per_guess: f64,
) -> f64 {
    let guesses = f64::from(draft_tokens);
    let step_cost = 1.0 + guesses * (verify_cost_per_guess + draft_cost_per_guess);
    expected_tokens_per_step(acceptance, draft_tokens) / step_cost
}

/// The guesses per step (1 to `max_draft_tokens`) with the highest predicted speedup, and it.
pub fn best_draft_tokens(
    acceptance: f64,
    max_draft_tokens: u32,
    verify_cost_per_guess: f64,
    draft_cost_per_guess: f64,
) -> (u32, f64) {
    (1..=max_draft_tokens.max(1))
        .map(|tokens| {
            let speedup = predicted_speedup(
                acceptance,
                tokens,
                verify_cost_per_guess,
                draft_cost_per_guess,
            );
            (tokens, speedup)
        })
        .fold((1, f64::MIN), |best, candidate| {
            if candidate.1 > best.1 {
                candidate
            } else {
                best
            }
        })
}

/// The draft `draft` beside `target` on `profile`, at `acceptance`, with at most
/// `max_draft_tokens` guesses per step.
pub fn plan_draft(
    target: &Plan,
    draft: &ModelFacts,
    profile: &DeviceProfile,
    acceptance: Acceptance,
    max_draft_tokens: u32,
) -> DraftPlan {
    // The draft goes where the model goes, with a context of the same size.
    let placement = Placement {
        n_gpu_layers: if target.n_gpu_layers > 0 {
            draft.n_layer + 1
        } else {
            0
        },
        gpu_split: target.placement.gpu_split.clone(),
    };
    let mut memory = memory_breakdown(draft, &target.config, &placement, profile);
    for device in &mut memory {
        // One process and one GPU runtime: the model's plan already counts them.
        device.overhead_bytes = if device.device == crate::memory::HOST_DEVICE {
            device
                .overhead_bytes
                .saturating_sub(HOST_PROCESS_OVERHEAD_BYTES)
        } else {
            0
        };
    }
    let together = combined(&target.memory, &memory);
    let base_budgets: Vec<DeviceBudget> = target
        .budgets
        .iter()
        .map(|budget| DeviceBudget {
            planned_bytes: 0,
            ..budget.clone()
        })
        .collect();
    let filled = fill_budgets(&together, &base_budgets, profile.unified_memory);
    let fits = filled.is_some();
    let budgets = filled.unwrap_or_else(|| {
        let mut over = base_budgets.clone();
        for budget in &mut over {
            budget.planned_bytes = if profile.unified_memory {
                together.iter().map(DeviceMemory::total_bytes).sum()
            } else {
                together
                    .iter()
                    .find(|device| device.device == budget.device)
                    .map_or(0, DeviceMemory::total_bytes)
            };
        }
        over
    });

    let draft_speed = predict_speed(
        draft,
        &target.config,
        &placement,
        profile,
        target.speed.decode_position,
    );
    let draft_cost_per_guess =
        target.speed.decode_tokens_per_second / draft_speed.decode_tokens_per_second.max(1e-9);
    let (verify_cost_per_guess, verify_cost_source) = if target.offload == Offload::None {
        (CPU_VERIFY_COST_PER_GUESS, VerifyCostSource::MeasuredCpu)
    } else {
        (
            target.speed.decode_tokens_per_second
                / target.speed.prefill_tokens_per_second.max(1e-9),
            VerifyCostSource::Predicted,
        )
    };
    let (draft_tokens, speedup) = best_draft_tokens(
        acceptance.rate,
        max_draft_tokens,
        verify_cost_per_guess,
        draft_cost_per_guess,
    );
    DraftPlan {
        extra_bytes: memory.iter().map(DeviceMemory::total_bytes).sum(),
        memory,
        budgets,
        fits,
        acceptance_rate: acceptance.rate,
        acceptance_source: acceptance.source,
        draft_tokens,
        tokens_per_step: expected_tokens_per_step(acceptance.rate, draft_tokens),
        verify_cost_per_guess,
        verify_cost_source,
        draft_cost_per_guess,
        draft_bytes_read_per_token: draft_speed.bytes_read_per_token,
        predicted_speedup: speedup,
        advised: fits && speedup > 1.0,
    }
}

/// The model's and the draft's memory, summed per device (devices in the model's order, then
/// any only the draft uses).
fn combined(target: &[DeviceMemory], draft: &[DeviceMemory]) -> Vec<DeviceMemory> {
    let mut together = target.to_vec();
    for device in draft {
        match together
            .iter_mut()
            .find(|known| known.device == device.device)
        {
            Some(known) => {
                known.weights_bytes += device.weights_bytes;
                known.repacked_weights_bytes += device.repacked_weights_bytes;
                known.kv_cache_bytes += device.kv_cache_bytes;
                known.output_bytes += device.output_bytes;
                known.compute_bytes += device.compute_bytes;
                known.overhead_bytes += device.overhead_bytes;
            }
            None => together.push(device.clone()),
        }
    }
    together
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synthetic::{self, Shape, LLAMA_3_1_8B};
    use crate::plan::{nominal_bits_per_weight, plan, Variant, Wishes};
    use crate::profile::{fixtures, DeviceProfile, GIB};

    /// Llama 3.2 1B, Llama 3.1 8B's draft (same vocabulary): 16 layers, tied embeddings.
    const LLAMA_3_2_1B: Shape = Shape {
        name: "Llama 3.2 1B",
        n_layer: 16,
        n_embd: 2048,
        n_ff: 8192,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 64,
        ..synthetic::LLAMA_3_2_3B
    };

    fn variant(shape: &Shape, quantization: &str) -> Variant {
        Variant {
            quantization: quantization.to_string(),
            facts: synthetic::model(shape, quantization, nominal_bits_per_weight(quantization)),
            estimated: false,
        }
    }

    /// `target` planned on `profile` (context `context`, else the longest that fits) and the
    /// draft `draft` beside it.
    fn pair(
        profile: &DeviceProfile,
        target: (&Shape, &str),
        draft: (&Shape, &str),
        context: Option<u32>,
        acceptance: Acceptance,
    ) -> (Plan, DraftPlan) {
        let wishes = Wishes {
            context,
            ..Wishes::default()
        };
        let target = plan(&[variant(target.0, target.1)], profile, &wishes).unwrap();
        let draft = variant(draft.0, draft.1).facts;
        let draft_plan = plan_draft(&target, &draft, profile, acceptance, 8);
        (target, draft_plan)
    }

    fn draft_beside_8b(profile: &DeviceProfile, acceptance: Acceptance) -> (Plan, DraftPlan) {
        pair(
            profile,
            (&LLAMA_3_1_8B, "Q4_K_M"),
            (&LLAMA_3_2_1B, "Q4_K_M"),
            Some(8192),
            acceptance,
        )
    }

    #[test]
    fn free_guesses_speed_up_and_costly_ones_slow_down() {
        // Free guesses and free verification: the speedup is the tokens per step.
        assert!(
            (predicted_speedup(0.8, 4, 0.0, 0.0) - expected_tokens_per_step(0.8, 4)).abs() < 1e-12
        );
        // Guesses as costly as a decode step never pay.
        let (_, speedup) = best_draft_tokens(1.0, 8, 0.0, 1.0);
        assert!(speedup <= 1.0, "{speedup}");
        // The best k grows with the acceptance rate.
        let (low, _) = best_draft_tokens(0.5, 8, 0.02, 0.05);
        let (high, _) = best_draft_tokens(0.95, 8, 0.02, 0.05);
        assert!(low < high, "{low} {high}");
        assert!(high <= 8);
    }

    /// README's draft pair on this CPU measured 0.46×: an F16 SmolLM2 whose Q4_1 draft costs
    /// nearly a decode step per guess (the CPU is bound by per-layer overhead), plus 0.36 of
    /// a step to verify each guess. At the prior, the plan advises against it.
    #[test]
    fn an_overhead_bound_cpu_pair_is_not_advised() {
        let (_, speedup) =
            best_draft_tokens(PRIOR_ACCEPTANCE_RATE, 8, CPU_VERIFY_COST_PER_GUESS, 0.9);
        assert!(speedup < 1.0, "{speedup}");
    }

    #[test]
    fn a_small_draft_beside_a_gpu_model_fits_and_is_advised() {
        let profile = fixtures::nvidia_12gb();
        let (target, draft) = draft_beside_8b(&profile, Acceptance::from_measurement(None));
        assert_eq!(target.offload, Offload::Full);
        assert!(draft.fits);
        assert_eq!(draft.acceptance_source, AcceptanceSource::Prior);
        assert_eq!(draft.verify_cost_source, VerifyCostSource::Predicted);
        // The 1B reads about an eighth of the 8B's bytes per token.
        assert!(
            draft.draft_cost_per_guess < 0.3,
            "{}",
            draft.draft_cost_per_guess
        );
        assert!(draft.predicted_speedup > 1.3, "{}", draft.predicted_speedup);
        assert!(draft.advised);
        // Its own KV cache for the same context, on the GPU, and no second CUDA runtime.
        let gpu = draft
            .memory
            .iter()
            .find(|device| device.device == "CUDA0")
            .unwrap();
        assert!(gpu.kv_cache_bytes > 0);
        assert_eq!(gpu.overhead_bytes, 0);
        assert!(
            draft.extra_bytes > GIB / 2 && draft.extra_bytes < 2 * GIB,
            "{}",
            draft.extra_bytes
        );
        let planned: u64 = draft
            .budgets
            .iter()
            .map(|budget| budget.planned_bytes)
            .sum();
        let alone: u64 = target
            .budgets
            .iter()
            .map(|budget| budget.planned_bytes)
            .sum();
        assert_eq!(planned, alone + draft.extra_bytes);
    }

    #[test]
    fn a_measured_acceptance_replaces_the_prior() {
        let profile = fixtures::nvidia_12gb();
        let (_, prior) = draft_beside_8b(&profile, Acceptance::from_measurement(None));
        let (_, poor) = draft_beside_8b(&profile, Acceptance::from_measurement(Some(0.2)));
        assert_eq!(poor.acceptance_source, AcceptanceSource::Given);
        assert!((poor.acceptance_rate - 0.2).abs() < 1e-12);
        assert!(poor.predicted_speedup < prior.predicted_speedup);
        assert!(poor.draft_tokens <= prior.draft_tokens);
        assert!((Acceptance::from_measurement(Some(1.7)).rate - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_draft_that_does_not_fit_is_not_advised() {
        // The 8B fills a 6 GB card at a long context; the 1B and its cache do not fit beside it.
        let profile = fixtures::nvidia_6gb();
        let (_, draft_plan) = pair(
            &profile,
            (&LLAMA_3_1_8B, "Q4_K_M"),
            (&LLAMA_3_2_1B, "Q8_0"),
            None,
            Acceptance::from_measurement(Some(0.9)),
        );
        assert!(!draft_plan.fits, "{:?}", draft_plan.budgets);
        assert!(!draft_plan.advised);
        assert!(draft_plan
            .budgets
            .iter()
            .any(|budget| budget.planned_bytes > budget.budget_bytes));
    }

    #[test]
    fn on_the_cpu_the_draft_stays_on_the_host_with_the_measured_verify_cost() {
        let profile = fixtures::laptop_8gb_no_gpu();
        let (target, draft) = pair(
            &profile,
            (&synthetic::LLAMA_3_2_3B, "Q4_K_M"),
            (&LLAMA_3_2_1B, "Q4_K_M"),
            None,
            Acceptance::from_measurement(None),
        );
        assert_eq!(target.offload, Offload::None);
        assert_eq!(draft.verify_cost_source, VerifyCostSource::MeasuredCpu);
        assert!((draft.verify_cost_per_guess - CPU_VERIFY_COST_PER_GUESS).abs() < 1e-12);
        assert_eq!(draft.memory.len(), 1);
        assert_eq!(draft.memory[0].device, "host");
    }
}
