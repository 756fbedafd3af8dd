//! How the planner ranks a model's quantizations: their nominal bits per weight, and the order
//! a quality preference tries them in (rule 1 of the plan's module comment).

use super::{QualityPreference, Variant};

/// Quantizations under this many bits per weight lose too much quality to be offered when a
/// larger one fits (they are tried last).
const LOW_QUALITY_BITS: f64 = 3.5;
/// Above this, quality gains are negligible while speed drops (Q8_0, F16): `Balanced` tries
/// them after the 4-6.6 bit range, and takes them only when there is room to spare.
const BALANCED_MAX_BITS: f64 = 6.6;
/// Where `Balanced` starts with layers on the CPU: the Q4_K_M / Q4_0 class, the usual
/// quality-for-speed trade there.
const BALANCED_CPU_MIN_BITS: f64 = 4.5;

/// Nominal bits per weight of a quantization mix (llama.cpp's `quantize` table), for ranking
/// variants; unknown names rank as 16 bits.
pub fn nominal_bits_per_weight(quantization: &str) -> f64 {
    const TABLE: &[(&str, f64)] = &[
        ("F32", 32.0),
        ("F16", 16.0),
        ("BF16", 16.0),
        ("Q8_0", 8.5),
        ("Q6_K", 6.56),
        ("Q5_1", 6.0),
        ("Q5_K_M", 5.69),
        ("Q5_K_S", 5.54),
        ("Q5_0", 5.5),
        ("Q4_1", 5.0),
        ("Q4_K_M", 4.85),
        ("Q4_K_S", 4.58),
        ("Q4_0", 4.5),
        ("IQ4_NL", 4.5),
        ("IQ4_XS", 4.25),
        ("MXFP4_MOE", 4.25),
        ("Q3_K_L", 4.27),
        ("Q3_K_M", 3.91),
        ("IQ3_M", 3.66),
        ("Q3_K_S", 3.5),
        ("IQ3_S", 3.44),
        ("IQ3_XS", 3.3),
        ("IQ3_XXS", 3.06),
        ("Q2_K", 2.96),
        ("IQ2_M", 2.7),
        ("Q2_K_S", 2.6),
        ("IQ2_S", 2.5),
        ("IQ2_XS", 2.31),
        ("IQ2_XXS", 2.06),
        ("TQ2_0", 2.06),
        ("IQ1_M", 1.75),
        ("TQ1_0", 1.69),
        ("IQ1_S", 1.56),
    ];
    TABLE
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(quantization))
        .map_or(16.0, |(_, bits)| *bits)
}

/// Variant indices in the order `quality` prefers them. With layers on the CPU (`on_cpu`),
/// `Balanced` starts from the small end of its range: there decode time grows with every byte.
pub(super) fn preference_order(
    variants: &[Variant],
    quality: QualityPreference,
    on_cpu: bool,
) -> Vec<usize> {
    let bits = |index: &usize| nominal_bits_per_weight(&variants[*index].quantization);
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let rank = |index: &usize| -> (u8, f64) {
        let bits = bits(index);
        match quality {
            QualityPreference::Best => (0, -bits),
            QualityPreference::Balanced if on_cpu => {
                if (BALANCED_CPU_MIN_BITS..=BALANCED_MAX_BITS).contains(&bits) {
                    (0, bits)
                } else if (LOW_QUALITY_BITS..BALANCED_CPU_MIN_BITS).contains(&bits) {
                    (1, -bits)
                } else if bits > BALANCED_MAX_BITS {
                    (2, bits)
                } else {
                    (3, -bits)
                }
            }
            QualityPreference::Balanced => {
                if (LOW_QUALITY_BITS..=BALANCED_MAX_BITS).contains(&bits) {
                    (0, -bits)
                } else if bits > BALANCED_MAX_BITS {
                    (1, bits)
                } else {
                    (2, -bits)
                }
            }
            QualityPreference::Fastest => {
                if bits >= LOW_QUALITY_BITS {
                    (0, bits)
                } else {
                    (1, -bits)
                }
            }
        }
    };
    order.sort_by(|a, b| {
        let (group_a, key_a) = rank(a);
        let (group_b, key_b) = rank(b);
        group_a.cmp(&group_b).then(key_a.total_cmp(&key_b))
    });
    order
}
