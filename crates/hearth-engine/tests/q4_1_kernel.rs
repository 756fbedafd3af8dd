//! The CPU matrix product for Q4_1 weights (Hearth's tiled kernel in the vendored llama.cpp,
//! vendor/README.md) against ggml's own per-column dot product, through ggml's real graph
//! code: every element must carry the same bits for 1 to 9 columns and for row counts that
//! leave partial tiles. That is what keeps a request's greedy output the same alone and batched
//! (the scheduler tests check it end to end with a model).
#![allow(unsafe_code)]

use std::ffi::c_void;

use hearth_testkit::Numbers;
use llama_cpp_sys_2 as sys;

mod ggml_support;

/// Elements per row: SmolLM2's hidden size, 18 blocks of 32.
const ROW_LENGTH: usize = 576;
/// 4 tiles of 4 rows and a partial tile of 3.
const ROWS: usize = 19;
const MAX_COLUMNS: usize = 9;
const THREADS: i32 = 2;

/// `weights` (ROWS rows of ROW_LENGTH) quantized to Q4_1, times `columns` (each ROW_LENGTH
/// long), computed by ggml's graph on THREADS threads: one result vector of ROWS per column.
fn ggml_mul_mat_q4_1(weights: &[f32], columns: &[Vec<f32>]) -> Vec<Vec<f32>> {
    unsafe {
        let ctx = ggml_support::context(16 << 20);
        let a = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_Q4_1, ROW_LENGTH as i64, ROWS as i64);
        let quantized = quantized_q4_1(weights);
        assert_eq!(quantized.len(), sys::ggml_nbytes(a));
        std::ptr::copy_nonoverlapping(quantized.as_ptr(), (*a).data as *mut u8, quantized.len());
        let b = sys::ggml_new_tensor_2d(
            ctx,
            sys::GGML_TYPE_F32,
            ROW_LENGTH as i64,
            columns.len() as i64,
        );
        let b_data = (*b).data as *mut f32;
        for (j, column) in columns.iter().enumerate() {
            std::ptr::copy_nonoverlapping(column.as_ptr(), b_data.add(j * ROW_LENGTH), ROW_LENGTH);
        }
        let product = sys::ggml_mul_mat(ctx, a, b);
        ggml_support::compute(ctx, product, THREADS);
        let out = (*product).data as *const f32;
        let result = (0..columns.len())
            .map(|j| std::slice::from_raw_parts(out.add(j * ROWS), ROWS).to_vec())
            .collect();
        sys::ggml_free(ctx);
        result
    }
}

/// The same product the way ggml computes one column without a matrix kernel: the column
/// quantized to Q8_1, then `vec_dot` of each Q4_1 row with it.
fn vec_dot_reference(weights: &[f32], column: &[f32]) -> Vec<f32> {
    unsafe {
        // Fills the half-precision tables the CPU kernels read (ggml's graph code does it too).
        sys::ggml_cpu_init();
        let q4_1 = &*sys::ggml_get_type_traits_cpu(sys::GGML_TYPE_Q4_1);
        assert_eq!(q4_1.vec_dot_type, sys::GGML_TYPE_Q8_1);
        let q8_1 = &*sys::ggml_get_type_traits_cpu(sys::GGML_TYPE_Q8_1);
        let row_bytes = sys::ggml_row_size(sys::GGML_TYPE_Q4_1, ROW_LENGTH as i64);
        let quantized_weights = quantized_q4_1(weights);
        let mut quantized_column =
            vec![0u8; sys::ggml_row_size(sys::GGML_TYPE_Q8_1, ROW_LENGTH as i64)];
        (q8_1.from_float.expect("Q8_1 from_float"))(
            column.as_ptr(),
            quantized_column.as_mut_ptr() as *mut c_void,
            ROW_LENGTH as i64,
        );
        let vec_dot = q4_1.vec_dot.expect("Q4_1 vec_dot");
        (0..ROWS)
            .map(|row| {
                let mut sum = 0f32;
                vec_dot(
                    ROW_LENGTH as i32,
                    &mut sum,
                    0,
                    quantized_weights.as_ptr().add(row * row_bytes) as *const c_void,
                    0,
                    quantized_column.as_ptr() as *const c_void,
                    0,
                    1,
                );
                sum
            })
            .collect()
    }
}

/// `weights` (ROWS rows of ROW_LENGTH) as Q4_1 blocks.
fn quantized_q4_1(weights: &[f32]) -> Vec<u8> {
    unsafe {
        let row_bytes = sys::ggml_row_size(sys::GGML_TYPE_Q4_1, ROW_LENGTH as i64);
        let mut quantized = vec![0u8; row_bytes * ROWS];
        let written = sys::ggml_quantize_chunk(
            sys::GGML_TYPE_Q4_1,
            weights.as_ptr(),
            quantized.as_mut_ptr() as *mut c_void,
            0,
            ROWS as i64,
            ROW_LENGTH as i64,
            std::ptr::null(),
        );
        assert_eq!(written, quantized.len());
        quantized
    }
}

/// `weights` rounded to Q4_1 and back.
fn dequantized_q4_1(weights: &[f32]) -> Vec<f32> {
    unsafe {
        let quantized = quantized_q4_1(weights);
        let traits = &*sys::ggml_get_type_traits(sys::GGML_TYPE_Q4_1);
        let mut back = vec![0f32; ROWS * ROW_LENGTH];
        (traits.to_float.expect("Q4_1 to_float"))(
            quantized.as_ptr() as *const c_void,
            back.as_mut_ptr(),
            (ROWS * ROW_LENGTH) as i64,
        );
        back
    }
}

#[test]
fn q4_1_matrix_product_has_the_bits_of_the_per_column_dot_product_for_any_column_count() {
    let mut numbers = Numbers(0x9E37_79B9_7F4A_7C15);
    let weights: Vec<f32> = (0..ROWS * ROW_LENGTH)
        .map(|_| numbers.next_in(-0.2, 0.3))
        .collect();
    let all_columns: Vec<Vec<f32>> = (0..MAX_COLUMNS)
        .map(|_| {
            (0..ROW_LENGTH)
                .map(|_| numbers.next_in(-2.0, 2.0))
                .collect()
        })
        .collect();
    let expected: Vec<Vec<f32>> = all_columns
        .iter()
        .map(|column| vec_dot_reference(&weights, column))
        .collect();

    // The reference itself is a real product: close to the product with the Q4_1 weights
    // dequantized (what is left is the rounding of the activations to 8 bits).
    let dequantized = dequantized_q4_1(&weights);
    for (column, sums) in all_columns.iter().zip(&expected) {
        for (row, sum) in sums.iter().enumerate() {
            let exact: f64 = dequantized[row * ROW_LENGTH..(row + 1) * ROW_LENGTH]
                .iter()
                .zip(column)
                .map(|(w, x)| f64::from(*w) * f64::from(*x))
                .sum();
            assert!(
                (f64::from(*sum) - exact).abs() < 0.1,
                "row {row}: {sum} is far from {exact}"
            );
        }
    }

    for count in 1..=MAX_COLUMNS {
        let got = ggml_mul_mat_q4_1(&weights, &all_columns[..count]);
        for (j, (got_column, expected_column)) in got.iter().zip(&expected).enumerate() {
            for (row, (g, e)) in got_column.iter().zip(expected_column).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    e.to_bits(),
                    "{count} columns, column {j}, row {row}: {g} (matrix) vs {e} (vec_dot)"
                );
            }
        }
    }
}
