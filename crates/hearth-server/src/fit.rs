//! Fit badges and the first-run recommendation on `GET /api/models`: whether each installed
//! model and each catalog quantization fits this machine (all on the GPU, partly, on the CPU,
//! or too large), with the planner's predicted decode speed, and which catalog model to start
//! with.
//!
//! Everything comes from `hearth-probe`'s planner over the probed device profile, with the
//! server's own context and parallel sequences. A model's facts come from its GGUF header on
//! disk; a catalog quantization that is not installed is estimated from an installed one of
//! the same model (as `hearth fit` does), and a catalog model with nothing installed from the
//! shape of a published model of about its size ([`shape_for_parameters`]): the server never
//! reads a header over the network. Estimated fits say so (`"estimated": true`).

use std::path::PathBuf;

use hearth_models::{CatalogModel, InstalledModel, ModelSource};
use hearth_probe::model::synthetic::{self, Shape};
use hearth_probe::{
    estimate_variant, nominal_bits_per_weight, plan, variant_from_file, DeviceProfile,
    ModelFactsError, Offload, Plan, PlanError, Variant, Wishes,
};
use serde_json::{json, Value};

use crate::system::round_to;

/// A model's quantization variants, each with its file when it is on disk.
pub type LocatedVariants = Vec<(Variant, Option<PathBuf>)>;

/// Below this predicted decode speed a model feels sluggish in a chat: the recommendation
/// takes the largest catalog model at or above it.
pub const MIN_RECOMMENDED_DECODE_TOKENS_PER_S: f64 = 8.0;
/// Context assumed for a catalog model whose card gives none.
const DEFAULT_TRAINED_CONTEXT: u64 = 4096;
/// The least feed-forward width of an estimated shape, as a multiple of its width.
const MIN_FFN_RATIO: u64 = 2;

/// A variant's header could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the GGUF header of {path}: {source}")]
pub struct VariantError {
    pub path: PathBuf,
    #[source]
    pub source: ModelFactsError,
}

/// The installed variants of catalog model `entry`, read from their files and labelled with
/// the catalog's quantization names.
pub fn installed_catalog_variants(
    entry: &CatalogModel,
    installed: &[InstalledModel],
) -> Result<LocatedVariants, VariantError> {
    let mut known = LocatedVariants::new();
    for model in installed {
        if let ModelSource::Catalog {
            catalog_id,
            quantization,
            ..
        } = &model.manifest.source
        {
            if *catalog_id == entry.id {
                let mut variant =
                    variant_from_file(&model.model_path).map_err(|source| VariantError {
                        path: model.model_path.clone(),
                        source,
                    })?;
                variant.quantization = quantization.clone();
                known.push((variant, Some(model.model_path.clone())));
            }
        }
    }
    Ok(known)
}

/// Adds, for every quantization of `entry` missing from `known`, a variant estimated from the
/// first known one (tensor sizes scaled by bits per weight). Does nothing when `known` is
/// empty.
pub fn add_estimated_variants(known: &mut LocatedVariants, entry: &CatalogModel) {
    let Some((reference, _)) = known.first().cloned() else {
        return;
    };
    for file in &entry.files {
        let already = known.iter().any(|(variant, _)| {
            variant
                .quantization
                .eq_ignore_ascii_case(&file.quantization)
        });
        if !already {
            known.push((estimate_variant(&reference, &file.quantization), None));
        }
    }
}

/// Published models the estimated shapes follow: parameters (billions), layers, width,
/// vocabulary, KV heads, head size, tied embeddings.
const REFERENCE_SHAPES: &[(f64, u32, u64, u64, u64, u64, bool)] = &[
    (0.135, 30, 576, 49_152, 3, 64, true),    // SmolLM2 135M
    (0.49, 24, 896, 151_936, 2, 64, true),    // Qwen2.5 0.5B
    (1.54, 28, 1536, 151_936, 2, 128, true),  // Qwen2.5 1.5B
    (3.09, 36, 2048, 151_936, 2, 128, true),  // Qwen2.5 3B
    (8.03, 32, 4096, 128_256, 8, 128, false), // Llama 3.1 8B
    (14.7, 48, 5120, 152_064, 8, 128, false), // Qwen2.5 14B
    (32.8, 64, 5120, 152_064, 8, 128, false), // Qwen2.5 32B
    (70.6, 80, 8192, 128_256, 8, 128, false), // Llama 3.1 70B
];

/// A dense transformer of about `parameters_billions`: the reference shape nearest in size,
/// with its feed-forward width set so the parameter count matches.
pub fn shape_for_parameters(parameters_billions: f64, n_ctx_train: u64) -> Shape {
    let wanted = (parameters_billions.max(0.01)) * 1e9;
    let nearest = REFERENCE_SHAPES
        .iter()
        .min_by(|a, b| {
            let distance =
                |shape: &&(f64, u32, u64, u64, u64, u64, bool)| (shape.0 * 1e9 / wanted).ln().abs();
            distance(a).total_cmp(&distance(b))
        })
        .copied()
        .unwrap_or(REFERENCE_SHAPES[0]);
    let (_, n_layer, n_embd, n_vocab, n_head_kv, head_dim, tied) = nearest;
    let embeddings = n_vocab * n_embd * if tied { 1 } else { 2 };
    let attention_per_layer = 2 * n_embd * n_embd + 2 * n_embd * n_head_kv * head_dim;
    let per_layer = (wanted - embeddings as f64) / f64::from(n_layer);
    let n_ff = ((per_layer - attention_per_layer as f64) / (3.0 * n_embd as f64)).max(0.0) as u64;
    Shape {
        name: "estimated",
        architecture: "llama",
        n_layer,
        n_embd,
        n_ff: n_ff.max(MIN_FFN_RATIO * n_embd),
        n_head: (n_embd / head_dim).max(1),
        n_head_kv,
        head_dim,
        n_vocab,
        n_ctx_train,
        tied_embeddings: tied,
        sliding_window: None,
        experts: None,
    }
}

/// Every quantization of `entry` estimated from its published size alone.
pub fn shape_estimated_variants(entry: &CatalogModel) -> LocatedVariants {
    let shape = shape_for_parameters(
        entry.parameters_billions,
        entry.context_length.unwrap_or(DEFAULT_TRAINED_CONTEXT),
    );
    entry
        .files
        .iter()
        .map(|file| {
            let facts = synthetic::model(
                &shape,
                &file.quantization,
                nominal_bits_per_weight(&file.quantization),
            );
            let variant = Variant {
                quantization: file.quantization.clone(),
                facts,
                estimated: true,
            };
            (variant, None)
        })
        .collect()
}

/// Every quantization of `entry`: installed ones read from disk, the others estimated from
/// them, or from the model's size when none is installed (an unreadable file counts as not
/// installed). Never touches the network.
pub fn catalog_variants(entry: &CatalogModel, installed: &[InstalledModel]) -> LocatedVariants {
    let mut known = installed_catalog_variants(entry, installed).unwrap_or_else(|error| {
        tracing::warn!(%error, "estimating instead of reading an installed model");
        Vec::new()
    });
    if known.is_empty() {
        return shape_estimated_variants(entry);
    }
    add_estimated_variants(&mut known, entry);
    known
}

/// `"gpu"`, `"partial"` or `"cpu"`: where a plan runs the layers.
fn badge(offload: Offload) -> &'static str {
    match offload {
        Offload::Full => "gpu",
        Offload::Partial => "partial",
        Offload::None => "cpu",
    }
}

/// The fit object of one plan (`None` where the planner cannot tell: an architecture it does
/// not model).
pub fn fit_json(result: &Result<Plan, PlanError>, estimated: bool) -> Option<Value> {
    match result {
        Ok(plan) => Some(json!({
            "badge": badge(plan.offload),
            "predicted_decode_tokens_per_s": round_to(plan.speed.decode_tokens_per_second, 1),
            "n_ctx": plan.n_ctx_per_sequence,
            "n_gpu_layers": plan.n_gpu_layers,
            "memory_bytes": plan.memory.iter().map(|device| device.total_bytes()).sum::<u64>(),
            "quantization": plan.quantization,
            "estimated": estimated || plan.estimated_from_other_variant,
        })),
        Err(PlanError::DoesNotFit { needed_bytes, .. }) => Some(json!({
            "badge": "too_large",
            "memory_bytes": needed_bytes,
            "estimated": estimated,
        })),
        Err(_) => None,
    }
}

/// The fit of one variant alone.
pub fn variant_fit(variant: &Variant, profile: &DeviceProfile, wishes: &Wishes) -> Option<Value> {
    fit_json(
        &plan(std::slice::from_ref(variant), profile, wishes),
        variant.estimated,
    )
}

/// The catalog model to start with: among the models whose planned quantization fits, the
/// largest predicted to decode at [`MIN_RECOMMENDED_DECODE_TOKENS_PER_S`] or faster, else the
/// fastest. `None` when nothing fits.
pub fn recommend(
    entries: &[(&CatalogModel, LocatedVariants)],
    profile: &DeviceProfile,
    wishes: &Wishes,
) -> Option<Value> {
    let planned: Vec<(&CatalogModel, Plan, bool)> = entries
        .iter()
        .filter_map(|(entry, variants)| {
            let plain: Vec<Variant> = variants.iter().map(|(v, _)| v.clone()).collect();
            let estimated = plain.iter().all(|variant| variant.estimated);
            plan(&plain, profile, wishes)
                .ok()
                .map(|plan| (*entry, plan, estimated))
        })
        .collect();
    let decode = |plan: &Plan| plan.speed.decode_tokens_per_second;
    let comfortable = planned
        .iter()
        .filter(|(_, plan, _)| decode(plan) >= MIN_RECOMMENDED_DECODE_TOKENS_PER_S)
        .max_by(|a, b| a.0.parameters_billions.total_cmp(&b.0.parameters_billions));
    let (entry, plan, estimated) = match comfortable {
        Some(best) => best,
        None => planned
            .iter()
            .max_by(|a, b| decode(&a.1).total_cmp(&decode(&b.1)))?,
    };
    let file = entry
        .files
        .iter()
        .find(|file| file.quantization.eq_ignore_ascii_case(&plan.quantization));
    let size_bytes = file
        .and_then(|file| file.size_bytes)
        .unwrap_or_else(|| plan.memory.iter().map(|device| device.weights_bytes).sum());
    let placement = match plan.offload {
        Offload::Full => "entirely on the GPU",
        Offload::Partial => "partly on the GPU",
        Offload::None => "on the CPU",
    };
    let reason = format!(
        "The largest catalog model predicted to answer at {MIN_RECOMMENDED_DECODE_TOKENS_PER_S:.0} tokens/s or faster here: about {:.0} tokens/s {placement}, with {} tokens of context.",
        decode(plan),
        plan.n_ctx_per_sequence
    );
    Some(json!({
        "model": format!("{}:{}", entry.id, plan.quantization),
        "name": entry.display_name,
        "quantization": plan.quantization,
        "size_bytes": size_bytes,
        "fit": fit_json(&Ok(plan.clone()), *estimated),
        "reason": reason,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_probe::profile::fixtures;

    fn catalog() -> hearth_models::Catalog {
        hearth_models::Catalog::builtin().unwrap()
    }

    fn wishes() -> Wishes {
        Wishes {
            context: Some(4096 * 2),
            n_parallel: 2,
            ..Wishes::default()
        }
    }

    #[test]
    fn estimated_shapes_match_the_published_parameter_counts() {
        for billions in [0.135, 0.5, 1.7, 3.0, 7.6, 12.0, 27.0] {
            let shape = shape_for_parameters(billions, 8192);
            let facts = synthetic::model(&shape, "F16", 16.0);
            let counted = facts.weight_bytes() as f64 / 2.0 / 1e9;
            assert!(
                (counted / billions - 1.0).abs() < 0.25,
                "{billions}B estimated as {counted:.2}B"
            );
        }
    }

    #[test]
    fn badges_follow_where_the_layers_run() {
        let catalog = catalog();
        let small = catalog.get("smollm2-135m-instruct").unwrap();
        let variants = shape_estimated_variants(small);
        let laptop = fixtures::laptop_8gb_no_gpu();
        let fit = variant_fit(&variants[0].0, &laptop, &wishes()).unwrap();
        assert_eq!(fit["badge"], "cpu", "{fit}");
        assert_eq!(fit["estimated"], true);
        assert_eq!(fit["n_ctx"], 4096);
        assert!(fit["predicted_decode_tokens_per_s"].as_f64().unwrap() > 10.0);
        let gpu = variant_fit(&variants[0].0, &fixtures::nvidia_12gb(), &wishes()).unwrap();
        assert_eq!(gpu["badge"], "gpu", "{gpu}");

        // 70 billion parameters do not fit an 8 GB laptop.
        let shape = shape_for_parameters(70.0, 8192);
        let huge = Variant {
            quantization: "Q4_K_M".into(),
            facts: synthetic::model(&shape, "Q4_K_M", 4.85),
            estimated: true,
        };
        let fit = variant_fit(&huge, &laptop, &wishes()).unwrap();
        assert_eq!(fit["badge"], "too_large", "{fit}");
        assert!(fit["memory_bytes"].as_u64().unwrap() > 8 << 30);
        let partial = variant_fit(&huge, &fixtures::nvidia_24gb(), &wishes());
        assert!(
            matches!(partial.as_ref().map(|f| f["badge"].clone()), Some(b) if b == "partial" || b == "too_large"),
            "{partial:?}"
        );
    }

    #[test]
    fn the_recommendation_is_the_largest_comfortable_model_that_fits() {
        let catalog = catalog();
        let entries: Vec<(&CatalogModel, LocatedVariants)> = catalog
            .models
            .iter()
            .map(|entry| (entry, catalog_variants(entry, &[])))
            .collect();
        let laptop = fixtures::laptop_8gb_no_gpu();
        let on_laptop = recommend(&entries, &laptop, &wishes()).unwrap();
        let fit = &on_laptop["fit"];
        assert_ne!(fit["badge"], "too_large");
        assert!(
            fit["predicted_decode_tokens_per_s"].as_f64().unwrap()
                >= MIN_RECOMMENDED_DECODE_TOKENS_PER_S,
            "{on_laptop}"
        );
        let model = on_laptop["model"].as_str().unwrap();
        let (id, quantization) = model.split_once(':').unwrap();
        let entry = catalog.get(id).unwrap();
        assert!(entry
            .files
            .iter()
            .any(|file| file.quantization == quantization));
        assert!(on_laptop["reason"].as_str().unwrap().contains("tokens/s"));
        assert!(on_laptop["size_bytes"].as_u64().unwrap() > 0);

        // A big GPU runs a larger model comfortably.
        let on_gpu = recommend(&entries, &fixtures::nvidia_24gb(), &wishes()).unwrap();
        let parameters = |value: &Value| {
            let id = value["model"].as_str().unwrap().split(':').next().unwrap();
            catalog.get(id).unwrap().parameters_billions
        };
        assert!(parameters(&on_gpu) >= parameters(&on_laptop), "{on_gpu}");
        assert_eq!(on_gpu["fit"]["badge"], "gpu");
    }
}
