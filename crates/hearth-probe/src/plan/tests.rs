use super::*;
use crate::model::synthetic::{self, Shape};
use crate::profile::fixtures;

const QUANTIZATIONS: &[&str] = &["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"];

fn variants(shape: &Shape) -> Vec<Variant> {
    QUANTIZATIONS
        .iter()
        .map(|quantization| Variant {
            quantization: quantization.to_string(),
            facts: synthetic::model(shape, quantization, nominal_bits_per_weight(quantization)),
            estimated: false,
        })
        .collect()
}

fn shapes() -> Vec<Shape> {
    vec![
        synthetic::LLAMA_3_2_3B,
        synthetic::LLAMA_3_1_8B,
        synthetic::QWEN_2_5_14B,
        synthetic::GEMMA_3_12B,
        synthetic::QWEN_3_30B_A3B,
    ]
}

fn gpu_unused_share(budget: &DeviceBudget) -> f64 {
    1.0 - budget.planned_bytes as f64 / budget.free_bytes.max(1) as f64
}

/// The checks every plan must pass: it fits every budget, and a GPU left more than 25%
/// free means neither a longer context nor a larger quantization would have fit.
fn check(name: &str, variants: &[Variant], profile: &DeviceProfile, plan: &Plan) {
    // The KV cache's host tier and the plan together stay inside the host's pool.
    let host = plan
        .budgets
        .iter()
        .find(|budget| budget.is_host_pool())
        .expect("every plan has a host pool");
    assert!(
        host.planned_bytes + plan.kv_host.budget_bytes <= host.budget_bytes,
        "{name}: the host tier does not fit beside the plan: {:?} {host:?}",
        plan.kv_host
    );
    assert_eq!(
        plan.kv_host.budget_bytes,
        crate::kv_host::budget_from_headroom(host.budget_bytes - host.planned_bytes),
        "{name}"
    );
    for budget in &plan.budgets {
        assert!(
            budget.planned_bytes <= budget.budget_bytes,
            "{name}: {} over budget: {budget:?}",
            budget.device
        );
    }
    let gpu_budgets: Vec<&DeviceBudget> = plan
        .budgets
        .iter()
        .filter(|budget| budget.device != "host")
        .collect();
    let underused = gpu_budgets
        .iter()
        .any(|budget| gpu_unused_share(budget) > 0.25);
    if underused && plan.offload == Offload::Full {
        let n_ctx_train = variants[0].facts.n_ctx_train as u32;
        let ceiling = n_ctx_train.min(GPU_CONTEXT_CEILING) * plan.n_parallel;
        assert!(
            plan.n_ctx + CONTEXT_STEP > ceiling,
            "{name}: GPU underused while the context could grow: {} of {ceiling}",
            plan.n_ctx
        );
        let chosen_bits = nominal_bits_per_weight(&plan.quantization);
        for variant in variants {
            if nominal_bits_per_weight(&variant.quantization) <= chosen_bits {
                continue;
            }
            let forced = super::plan(
                std::slice::from_ref(variant),
                profile,
                &Wishes {
                    context: Some(plan.n_ctx),
                    ..Wishes::default()
                },
            );
            assert!(
                !matches!(forced, Ok(ref other) if other.offload == Offload::Full),
                "{name}: GPU underused while {} would have fit",
                variant.quantization
            );
        }
    }
}

#[test]
fn every_fixture_plan_fits_and_uses_the_gpu() {
    for (profile_name, profile) in fixtures::all() {
        for shape in shapes() {
            let variants = variants(&shape);
            let name = format!("{profile_name} / {}", shape.name);
            match plan(&variants, &profile, &Wishes::default()) {
                Ok(plan) => {
                    check(&name, &variants, &profile, &plan);
                    assert!(plan.speed.decode_tokens_per_second > 0.0, "{name}");
                }
                Err(PlanError::DoesNotFit { .. }) => {
                    // Only models whose weights nearly fill all budgets together may fail.
                    let smallest = variants[0].facts.weight_bytes();
                    let all_budgets: u64 = budgets(&profile)
                        .iter()
                        .map(|budget| budget.budget_bytes)
                        .sum();
                    assert!(
                        smallest as f64 > all_budgets as f64 * 0.8,
                        "{name} should fit"
                    );
                }
                Err(other) => panic!("{name}: {other}"),
            }
        }
    }
}

#[test]
fn laptop_without_gpu_runs_a_3b_model_on_the_cpu() {
    let variants = variants(&synthetic::LLAMA_3_2_3B);
    let plan = plan(
        &variants,
        &fixtures::laptop_8gb_no_gpu(),
        &Wishes::default(),
    )
    .unwrap();
    assert_eq!(plan.offload, Offload::None);
    assert_eq!(plan.n_gpu_layers, 0);
    assert!(plan.n_ctx >= DEFAULT_MIN_CONTEXT);
    assert!(plan.n_ctx <= CPU_CONTEXT_CEILING);
    // 25 GB/s over ~2 GB of weights: about 10 tokens/s at best.
    assert!(
        (3.0..15.0).contains(&plan.speed.decode_tokens_per_second),
        "{:?}",
        plan.speed
    );
}

#[test]
fn a_3b_model_fits_a_6gb_gpu_and_an_8b_one_mostly() {
    let small = variants(&synthetic::LLAMA_3_2_3B);
    let plan_small = plan(&small, &fixtures::nvidia_6gb(), &Wishes::default()).unwrap();
    assert_eq!(plan_small.offload, Offload::Full);
    assert_eq!(plan_small.n_gpu_layers, 29);
    assert!(plan_small.n_ctx >= DEFAULT_MIN_CONTEXT);
    // Llama 3.1 8B Q4_K_M: 4.6 GiB of weights, 0.5 GiB of KV at 4096, 0.25 GiB of logits
    // scratch and the CUDA context do not fit 5.5 GiB with a margin: most layers do.
    let large = variants(&synthetic::LLAMA_3_1_8B);
    let plan_large = plan(&large, &fixtures::nvidia_6gb(), &Wishes::default()).unwrap();
    assert_eq!(plan_large.offload, Offload::Partial);
    assert_eq!(plan_large.quantization, "Q4_K_M");
    assert!(plan_large.n_gpu_layers >= 24, "{}", plan_large.n_gpu_layers);
}

#[test]
fn a_24gb_gpu_takes_q8_and_a_long_context() {
    let variants = variants(&synthetic::LLAMA_3_1_8B);
    let plan = plan(&variants, &fixtures::nvidia_24gb(), &Wishes::default()).unwrap();
    assert_eq!(plan.offload, Offload::Full);
    assert_eq!(plan.quantization, "Q8_0");
    assert!(plan.n_ctx >= 32_768, "{}", plan.n_ctx);
    // 850 GB/s over ~8.5 GB: about 80 tokens/s.
    assert!(
        (50.0..110.0).contains(&plan.speed.decode_tokens_per_second),
        "{:?}",
        plan.speed
    );
}

#[test]
fn a_14b_model_is_split_over_two_gpus() {
    let variants = variants(&synthetic::QWEN_2_5_14B);
    let profile = fixtures::two_gpus();
    let plan = plan(&variants, &profile, &Wishes::default()).unwrap();
    assert_eq!(plan.offload, Offload::Full);
    assert_eq!(plan.gpu_split.len(), 2);
    let gpus: Vec<&DeviceMemory> = plan.memory.iter().filter(|m| m.device != "host").collect();
    assert_eq!(gpus.len(), 2, "{:?}", plan.memory);
    assert!(gpus.iter().all(|gpu| gpu.weights_bytes > 2 * GIB));
}

#[test]
fn unified_memory_is_one_budget() {
    let variants = variants(&synthetic::LLAMA_3_1_8B);
    let profile = fixtures::apple_16gb_unified();
    let plan = plan(&variants, &profile, &Wishes::default()).unwrap();
    assert_eq!(plan.budgets.len(), 1);
    assert_eq!(plan.budgets[0].device, "unified");
    let total: u64 = plan.memory.iter().map(DeviceMemory::total_bytes).sum();
    assert_eq!(plan.budgets[0].planned_bytes, total);
    assert_eq!(plan.offload, Offload::Full);
}

#[test]
fn a_model_larger_than_the_gpu_is_split_with_the_cpu() {
    let variants = variants(&synthetic::QWEN_2_5_14B);
    let plan = plan(&variants, &fixtures::nvidia_6gb(), &Wishes::default()).unwrap();
    assert_eq!(plan.offload, Offload::Partial);
    assert!(
        plan.n_gpu_layers > 10 && plan.n_gpu_layers < 48,
        "{}",
        plan.n_gpu_layers
    );
    let gpu = plan
        .budgets
        .iter()
        .find(|budget| budget.device == "CUDA0")
        .unwrap();
    assert!(gpu_unused_share(gpu) < 0.25, "{gpu:?}");
}

#[test]
fn mixture_of_experts_reads_only_the_active_experts() {
    let variants = variants(&synthetic::QWEN_3_30B_A3B);
    let plan = plan(&variants, &fixtures::nvidia_24gb(), &Wishes::default()).unwrap();
    assert_eq!(plan.offload, Offload::Full);
    let weights = variants
        .iter()
        .find(|variant| variant.quantization == plan.quantization)
        .unwrap()
        .facts
        .weight_bytes() as f64;
    // About 3B of 30B parameters are active: far fewer bytes per token than the weights.
    assert!(
        plan.speed.bytes_read_per_token < weights * 0.25,
        "{:?}",
        plan.speed
    );
}

#[test]
fn sliding_window_caches_follow_swa_full() {
    let variants = variants(&synthetic::GEMMA_3_12B);
    let profile = fixtures::nvidia_24gb();
    let wishes = Wishes {
        context: Some(32_768),
        ..Wishes::default()
    };
    let full = plan(&variants[..1], &profile, &wishes).unwrap();
    let mut windowed_config = full.config.clone();
    windowed_config.swa_full = false;
    let windowed = crate::memory::memory_breakdown(
        &variants[0].facts,
        &windowed_config,
        &full.placement,
        &profile,
    );
    let kv = |memory: &[DeviceMemory]| memory.iter().map(|m| m.kv_cache_bytes).sum::<u64>();
    // 8 global layers of 48 keep the whole context; 40 sliding ones keep window + ubatch.
    let ratio = kv(&windowed) as f64 / kv(&full.memory) as f64;
    assert!((0.15..0.25).contains(&ratio), "{ratio}");
    // `hearth fit` says which was chosen and what it costs.
    let extra_mib = (kv(&full.memory) - kv(&windowed)) as f64 / crate::profile::MIB as f64;
    let note = full
        .notes
        .iter()
        .find(|note| note.contains("swa_full"))
        .expect("a note on the sliding-window cache");
    assert!(
        note.contains(&format!("{extra_mib:.1} MiB more than window-sized")),
        "{note}"
    );
}

#[test]
fn an_exact_context_is_kept_or_refused() {
    let variants = variants(&synthetic::LLAMA_3_2_3B);
    let wishes = Wishes {
        context: Some(8192),
        ..Wishes::default()
    };
    let plan = plan(&variants, &fixtures::nvidia_12gb(), &wishes).unwrap();
    assert_eq!(plan.n_ctx, 8192);
    let huge = Wishes {
        context: Some(4_000_000),
        ..Wishes::default()
    };
    assert!(matches!(
        super::plan(&variants, &fixtures::laptop_8gb_no_gpu(), &huge),
        Err(PlanError::DoesNotFit { .. })
    ));
}

#[test]
fn preferences_order_the_variants() {
    let variants = variants(&synthetic::LLAMA_3_2_3B);
    let names = |quality| -> Vec<String> {
        preference_order(&variants, quality, false)
            .into_iter()
            .map(|index| variants[index].quantization.clone())
            .collect()
    };
    assert_eq!(
        names(QualityPreference::Best),
        ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M"]
    );
    assert_eq!(
        names(QualityPreference::Balanced),
        ["Q6_K", "Q5_K_M", "Q4_K_M", "Q8_0"]
    );
    assert_eq!(
        names(QualityPreference::Fastest),
        ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"]
    );
    let on_cpu: Vec<String> = preference_order(&variants, QualityPreference::Balanced, true)
        .into_iter()
        .map(|index| variants[index].quantization.clone())
        .collect();
    assert_eq!(on_cpu, ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"]);
}
