//! Fit badges and the first-run recommendation on `GET /api/models`: whether each installed
//! model and each catalog quantization fits this machine (all on the GPU, partly, on the CPU,
//! or too large), with the planner's predicted decode speed, and which catalog model to start
//! with.
//!
//! Everything comes from `hearth-probe`'s planner over the probed device profile, with the
//! server's own context and parallel sequences, and the variants of `hearth_probe::catalog`
//! (installed ones read from disk, the others estimated, as `hearth fit` does): the server
//! never reads a header over the network. Estimated fits say so (`"estimated": true`).

use hearth_models::CatalogModel;
pub use hearth_probe::catalog::{catalog_variants, LocatedVariants};
use hearth_probe::{plan, DeviceProfile, Offload, Plan, PlanError, Variant, Wishes};
use serde::Serialize;

use crate::system::round_to;

/// Below this predicted decode speed a model feels sluggish in a chat: the recommendation
/// takes the largest catalog model at or above it.
pub const MIN_RECOMMENDED_DECODE_TOKENS_PER_S: f64 = 8.0;

/// `"gpu"`, `"partial"` or `"cpu"`: where a plan runs the layers.
fn badge(offload: Offload) -> &'static str {
    match offload {
        Offload::Full => "gpu",
        Offload::Partial => "partial",
        Offload::None => "cpu",
    }
}

/// How a model fits this machine (the `fit` object of `/api/models`). Fields in sorted order
/// ([`crate::wire`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Fit {
    /// The planner's plan: where the layers go and how fast it answers.
    Planned {
        badge: &'static str,
        estimated: bool,
        memory_bytes: u64,
        n_ctx: u32,
        n_gpu_layers: u32,
        predicted_decode_tokens_per_s: f64,
        quantization: String,
    },
    /// Even the smallest plan does not fit (`badge` is `too_large`).
    TooLarge {
        badge: &'static str,
        estimated: bool,
        memory_bytes: u64,
    },
}

/// The first-run recommendation on `/api/models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub fit: Option<Fit>,
    pub model: String,
    pub name: String,
    pub quantization: String,
    pub reason: String,
    pub size_bytes: u64,
}

/// The fit of one plan (`None` where the planner cannot tell: an architecture it does not
/// model).
pub fn fit_of(result: &Result<Plan, PlanError>, estimated: bool) -> Option<Fit> {
    match result {
        Ok(plan) => Some(Fit::Planned {
            badge: badge(plan.offload),
            estimated: estimated || plan.estimated_from_other_variant,
            memory_bytes: plan.memory.iter().map(|device| device.total_bytes()).sum(),
            n_ctx: plan.n_ctx_per_sequence,
            n_gpu_layers: plan.n_gpu_layers,
            predicted_decode_tokens_per_s: round_to(plan.speed.decode_tokens_per_second, 1),
            quantization: plan.quantization.clone(),
        }),
        Err(PlanError::DoesNotFit { needed_bytes, .. }) => Some(Fit::TooLarge {
            badge: "too_large",
            estimated,
            memory_bytes: *needed_bytes,
        }),
        Err(_) => None,
    }
}

/// The fit of one variant alone.
pub fn variant_fit(variant: &Variant, profile: &DeviceProfile, wishes: &Wishes) -> Option<Fit> {
    fit_of(
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
) -> Option<Recommendation> {
    let planned: Vec<(&CatalogModel, Plan, bool)> = entries
        .iter()
        // The first chat model is recommended; an embedding model cannot chat.
        .filter(|(entry, _)| !entry.embedding)
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
    Some(Recommendation {
        fit: fit_of(&Ok(plan.clone()), *estimated),
        model: format!("{}:{}", entry.id, plan.quantization),
        name: entry.display_name.clone(),
        quantization: plan.quantization.clone(),
        reason,
        size_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_probe::catalog::{shape_estimated_variants, shape_for_parameters};
    use hearth_probe::model::synthetic;
    use hearth_probe::profile::fixtures;

    fn catalog() -> hearth_models::Catalog {
        hearth_models::Catalog::builtin().unwrap()
    }

    /// What the UI receives: the wire JSON (fields checked sorted, as `crate::wire` wants).
    fn wire(value: impl Serialize) -> serde_json::Value {
        crate::wire::assert_sorted(&value);
        serde_json::to_value(value).unwrap()
    }

    fn wishes() -> Wishes {
        Wishes {
            context: Some(4096 * 2),
            n_parallel: 2,
            ..Wishes::default()
        }
    }

    #[test]
    fn badges_follow_where_the_layers_run() {
        let catalog = catalog();
        let small = catalog.get("smollm2-135m-instruct").unwrap();
        let variants = shape_estimated_variants(small);
        let laptop = fixtures::laptop_8gb_no_gpu();
        let fit = wire(variant_fit(&variants[0].0, &laptop, &wishes()).unwrap());
        assert_eq!(fit["badge"], "cpu", "{fit}");
        assert_eq!(fit["estimated"], true);
        assert_eq!(fit["n_ctx"], 4096);
        assert!(fit["predicted_decode_tokens_per_s"].as_f64().unwrap() > 10.0);
        let gpu = wire(variant_fit(&variants[0].0, &fixtures::nvidia_12gb(), &wishes()).unwrap());
        assert_eq!(gpu["badge"], "gpu", "{gpu}");

        // 70 billion parameters do not fit an 8 GB laptop.
        let shape = shape_for_parameters(70.0, 8192);
        let huge = Variant {
            quantization: "Q4_K_M".into(),
            facts: synthetic::model(&shape, "Q4_K_M", 4.85),
            estimated: true,
        };
        let fit = wire(variant_fit(&huge, &laptop, &wishes()).unwrap());
        assert_eq!(fit["badge"], "too_large", "{fit}");
        assert!(fit["memory_bytes"].as_u64().unwrap() > 8 << 30);
        let partial = variant_fit(&huge, &fixtures::nvidia_24gb(), &wishes()).map(wire);
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
        let on_laptop = wire(recommend(&entries, &laptop, &wishes()).unwrap());
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
        let on_gpu = wire(recommend(&entries, &fixtures::nvidia_24gb(), &wishes()).unwrap());
        let parameters = |value: &serde_json::Value| {
            let id = value["model"].as_str().unwrap().split(':').next().unwrap();
            catalog.get(id).unwrap().parameters_billions
        };
        assert!(parameters(&on_gpu) >= parameters(&on_laptop), "{on_gpu}");
        assert_eq!(on_gpu["fit"]["badge"], "gpu");
    }
}
