//! The ggml tensor element types a GGUF file may use, with their block layout.
//!
//! The numeric ids, block sizes and block byte sizes are copied from the llama.cpp that Hearth
//! links (`ggml/include/ggml.h` and the `type_traits` table in `ggml/src/ggml.c`); the byte sizes
//! were checked by compiling `sizeof(block_*)` from `ggml-common.h`. Ids that ggml has removed
//! (4, 5, 31–33, 36–38) are unknown here, as they are to llama.cpp's GGUF loader.

use std::fmt;

/// The element type of a tensor, as stored in a GGUF tensor info.
///
/// Quantized types store elements in blocks: `block_size` elements take `block_byte_size`
/// bytes, so a row's length must be a multiple of `block_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    Iq2Xxs,
    Iq2Xs,
    Iq3Xxs,
    Iq1S,
    Iq4Nl,
    Iq3S,
    Iq2S,
    Iq4Xs,
    I8,
    I16,
    I32,
    I64,
    F64,
    Iq1M,
    Bf16,
    Tq1_0,
    Tq2_0,
    Mxfp4,
    Nvfp4,
    Q1_0,
    Q2_0,
}

/// Elements per block of the k-quants, i-quants and ternary types (`QK_K` in ggml).
const K_QUANT_BLOCK_SIZE: u64 = 256;

/// One row of the type table: (type, ggml id, name as ggml prints it, block size, block bytes).
type TypeTableRow = (GgmlType, u32, &'static str, u64, u64);

/// Every known type. Kept in id order so the table reads like ggml.h.
const TYPE_TABLE: &[TypeTableRow] = &[
    (GgmlType::F32, 0, "f32", 1, 4),
    (GgmlType::F16, 1, "f16", 1, 2),
    (GgmlType::Q4_0, 2, "q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "q8_1", 32, 36),
    (GgmlType::Q2K, 10, "q2_K", K_QUANT_BLOCK_SIZE, 84),
    (GgmlType::Q3K, 11, "q3_K", K_QUANT_BLOCK_SIZE, 110),
    (GgmlType::Q4K, 12, "q4_K", K_QUANT_BLOCK_SIZE, 144),
    (GgmlType::Q5K, 13, "q5_K", K_QUANT_BLOCK_SIZE, 176),
    (GgmlType::Q6K, 14, "q6_K", K_QUANT_BLOCK_SIZE, 210),
    (GgmlType::Q8K, 15, "q8_K", K_QUANT_BLOCK_SIZE, 292),
    (GgmlType::Iq2Xxs, 16, "iq2_xxs", K_QUANT_BLOCK_SIZE, 66),
    (GgmlType::Iq2Xs, 17, "iq2_xs", K_QUANT_BLOCK_SIZE, 74),
    (GgmlType::Iq3Xxs, 18, "iq3_xxs", K_QUANT_BLOCK_SIZE, 98),
    (GgmlType::Iq1S, 19, "iq1_s", K_QUANT_BLOCK_SIZE, 50),
    (GgmlType::Iq4Nl, 20, "iq4_nl", 32, 18),
    (GgmlType::Iq3S, 21, "iq3_s", K_QUANT_BLOCK_SIZE, 110),
    (GgmlType::Iq2S, 22, "iq2_s", K_QUANT_BLOCK_SIZE, 82),
    (GgmlType::Iq4Xs, 23, "iq4_xs", K_QUANT_BLOCK_SIZE, 136),
    (GgmlType::I8, 24, "i8", 1, 1),
    (GgmlType::I16, 25, "i16", 1, 2),
    (GgmlType::I32, 26, "i32", 1, 4),
    (GgmlType::I64, 27, "i64", 1, 8),
    (GgmlType::F64, 28, "f64", 1, 8),
    (GgmlType::Iq1M, 29, "iq1_m", K_QUANT_BLOCK_SIZE, 56),
    (GgmlType::Bf16, 30, "bf16", 1, 2),
    (GgmlType::Tq1_0, 34, "tq1_0", K_QUANT_BLOCK_SIZE, 54),
    (GgmlType::Tq2_0, 35, "tq2_0", K_QUANT_BLOCK_SIZE, 66),
    (GgmlType::Mxfp4, 39, "mxfp4", 32, 17),
    (GgmlType::Nvfp4, 40, "nvfp4", 64, 36),
    (GgmlType::Q1_0, 41, "q1_0", 128, 18),
    (GgmlType::Q2_0, 42, "q2_0", 64, 18),
];

impl GgmlType {
    /// Every type this crate knows, in ggml id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TYPE_TABLE.iter().map(|row| row.0)
    }

    /// The type with ggml id `type_id`, or `None` for an unknown or removed id.
    pub fn from_id(type_id: u32) -> Option<GgmlType> {
        TYPE_TABLE
            .iter()
            .find(|row| row.1 == type_id)
            .map(|row| row.0)
    }

    fn row(self) -> &'static TypeTableRow {
        // Every variant has exactly one row (checked by a unit test), so the lookup cannot
        // miss; the fallback keeps this function total without a panic path.
        TYPE_TABLE
            .iter()
            .find(|row| row.0 == self)
            .unwrap_or(&TYPE_TABLE[0])
    }

    /// The numeric id stored in GGUF files (`enum ggml_type`).
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// The name ggml prints for this type, e.g. `q4_K`.
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Elements per block (1 for plain types such as F32).
    pub fn block_size(self) -> u64 {
        self.row().3
    }

    /// Bytes per block.
    pub fn block_byte_size(self) -> u64 {
        self.row().4
    }

    /// Whether elements are stored in multi-element quantization blocks.
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Average bits per element, e.g. 4.5 for Q4_K (useful for a quantization's size estimate).
    pub fn bits_per_element(self) -> f64 {
        const BITS_PER_BYTE: f64 = 8.0;
        self.block_byte_size() as f64 * BITS_PER_BYTE / self.block_size() as f64
    }

    /// Bytes that `element_count` elements take, or `None` when the count is not a whole
    /// number of blocks or the size overflows `u64`.
    pub fn byte_size_of(self, element_count: u64) -> Option<u64> {
        if element_count % self.block_size() != 0 {
            return None;
        }
        (element_count / self.block_size()).checked_mul(self.block_byte_size())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_own_row_and_id() {
        let mut ids = std::collections::HashSet::new();
        for row in TYPE_TABLE {
            assert!(ids.insert(row.1), "duplicate id {}", row.1);
            assert_eq!(row.0.row().1, row.1);
            assert_eq!(GgmlType::from_id(row.1), Some(row.0));
        }
        assert_eq!(TYPE_TABLE.len(), 35);
    }

    #[test]
    fn removed_and_out_of_range_ids_are_unknown() {
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 43, u32::MAX] {
            assert_eq!(GgmlType::from_id(removed), None, "id {removed}");
        }
    }

    #[test]
    fn sizes_match_ggml() {
        assert_eq!(GgmlType::Q4_1.byte_size_of(64), Some(40));
        assert_eq!(GgmlType::Q4K.bits_per_element(), 4.5);
        assert_eq!(GgmlType::Q8_0.bits_per_element(), 8.5);
        assert_eq!(GgmlType::F32.byte_size_of(3), Some(12));
        assert_eq!(GgmlType::Q6K.byte_size_of(100), None);
        assert_eq!(GgmlType::F64.byte_size_of(u64::MAX), None);
        assert_eq!(GgmlType::Q4K.to_string(), "q4_K");
    }
}
