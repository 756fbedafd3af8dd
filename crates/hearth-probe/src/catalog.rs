//! A catalog model's quantization variants for the planner, read from the installed files or
//! estimated, never from the network: what `hearth fit` and the server's fit badges plan from.
//!
//! An installed variant's facts come from its GGUF header on disk. A catalog quantization that
//! is not installed is estimated from an installed one of the same model (tensor sizes scaled
//! by bits per weight, [`add_estimated_variants`]), and a catalog model with nothing installed
//! from the shape of a published model of about its size ([`shape_for_parameters`]).
//! Estimated variants say so (`Variant::estimated`).

use std::path::PathBuf;

use hearth_models::{CatalogModel, InstalledModel, ModelSource};

use crate::model::synthetic::{self, Shape};
use crate::{
    estimate_variant, nominal_bits_per_weight, variant_from_file, ModelFactsError, Variant,
};

/// A model's quantization variants, each with its file when it is on disk.
pub type LocatedVariants = Vec<(Variant, Option<PathBuf>)>;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
