//! Flash attention on the CPU (Hearth's kernel in the vendored llama.cpp, vendor/README.md),
//! through ggml's real graph code. One query row must come out with the same bits whatever
//! surrounds it: alone, in an 80-row prefill chunk (where upstream tiles), over a 1,024-cell
//! view (where upstream splits the cells across threads), beside three other sequences, and on
//! one thread or two. That is what keeps a request's greedy output the same alone, batched, or
//! from a cached prefix; the scheduler tests check it end to end with a model. The results are
//! also checked against attention computed in f64.
#![allow(unsafe_code)]

use hearth_testkit::Numbers;
use llama_cpp_sys_2 as sys;

mod ggml_support;

/// Attention heads as in a model: `heads` query heads share `kv_heads` K/V heads.
#[derive(Clone, Copy)]
struct Shape {
    head_dim: usize,
    heads: usize,
    kv_heads: usize,
}

/// SmolLM2-135M: 9 query heads over 3 K/V heads of 64.
const SMOLLM2: Shape = Shape {
    head_dim: 64,
    heads: 9,
    kv_heads: 3,
};
/// Gemma 3 270M: 4 query heads over one K/V head of 256.
const GEMMA3: Shape = Shape {
    head_dim: 256,
    heads: 4,
    kv_heads: 1,
};

/// A head size no vector width divides (36 = 2 × 16 + 4 = 4 × 8 + 4): the kernel's portable
/// path, the one CPUs without AVX2 or AVX-512 run.
const ODD_HEADS: Shape = Shape {
    head_dim: 36,
    heads: 4,
    kv_heads: 2,
};

/// Cells of the sequence that holds the row under test; the rest of any view is masked.
const USED_CELLS: usize = 300;
/// The position of the row under test: it sees cells 0..=TARGET_POSITION.
const TARGET_POSITION: usize = 250;

/// One sequence's share of a batch: its K/V view and its query rows, each with the position
/// it attends up to (causal) or `None` for a row that sees nothing of this view.
struct Sequence {
    keys: Vec<f32>,                  // [view_cells][kv_heads][head_dim]
    values: Vec<f32>,                // [view_cells][kv_heads][head_dim]
    queries: Vec<(Vec<f32>, usize)>, // ([heads][head_dim], last visible cell)
}

/// The sequence under test: its first USED_CELLS cells are the same in every batch; cells past
/// them hold stale values from other seeds, as a reused KV cache would.
fn target_sequence(
    shape: Shape,
    view_cells: usize,
    stale_seed: u64,
    target_query: &[f32],
) -> Sequence {
    let per_cell = shape.kv_heads * shape.head_dim;
    let mut numbers = Numbers(0x5eed_0001);
    let mut keys = numbers.values(USED_CELLS * per_cell);
    let mut values = numbers.values(USED_CELLS * per_cell);
    let mut stale = Numbers(stale_seed);
    keys.extend(stale.values((view_cells - USED_CELLS) * per_cell));
    values.extend(stale.values((view_cells - USED_CELLS) * per_cell));
    Sequence {
        keys,
        values,
        queries: vec![(target_query.to_vec(), TARGET_POSITION)],
    }
}

fn target_query(shape: Shape) -> Vec<f32> {
    Numbers(0x007a_26e7).values(shape.heads * shape.head_dim)
}

/// Runs ggml's flash attention over `sequences` (one stream each, all with the same number of
/// query rows and view cells) and returns each row's output, [sequence][row][heads * head_dim].
fn flash_attention(shape: Shape, sequences: &[Sequence], threads: i32) -> Vec<Vec<Vec<f32>>> {
    let streams = sequences.len();
    let rows = sequences[0].queries.len();
    let cells = sequences[0].keys.len() / (shape.kv_heads * shape.head_dim);
    let d = shape.head_dim;
    unsafe {
        let ctx = ggml_support::context(256 << 20);
        let q = sys::ggml_new_tensor_4d(
            ctx,
            sys::GGML_TYPE_F32,
            d as i64,
            rows as i64,
            shape.heads as i64,
            streams as i64,
        );
        let new_kv = || {
            sys::ggml_new_tensor_4d(
                ctx,
                sys::GGML_TYPE_F16,
                d as i64,
                cells as i64,
                shape.kv_heads as i64,
                streams as i64,
            )
        };
        let (k, v) = (new_kv(), new_kv());
        let mask = sys::ggml_new_tensor_4d(
            ctx,
            sys::GGML_TYPE_F16,
            cells as i64,
            rows as i64,
            1,
            streams as i64,
        );
        let q_data = (*q).data as *mut f32;
        let k_data = (*k).data as *mut u16;
        let v_data = (*v).data as *mut u16;
        let mask_data = (*mask).data as *mut u16;
        for (s, sequence) in sequences.iter().enumerate() {
            for (r, (query, last_visible)) in sequence.queries.iter().enumerate() {
                for h in 0..shape.heads {
                    for i in 0..d {
                        // q is [d][rows][heads][streams], the query [heads][d].
                        *q_data.add(((s * shape.heads + h) * rows + r) * d + i) = query[h * d + i];
                    }
                }
                for c in 0..cells {
                    let visible = c <= *last_visible;
                    let bits = if visible { 0.0 } else { f32::NEG_INFINITY };
                    *mask_data.add((s * rows + r) * cells + c) = f16_bits(bits);
                }
            }
            for c in 0..cells {
                for h in 0..shape.kv_heads {
                    for i in 0..d {
                        let source = (c * shape.kv_heads + h) * d + i;
                        let target = ((s * shape.kv_heads + h) * cells + c) * d + i;
                        *k_data.add(target) = f16_bits(sequence.keys[source]);
                        *v_data.add(target) = f16_bits(sequence.values[source]);
                    }
                }
            }
        }
        let scale = 1.0 / (d as f32).sqrt();
        let out = sys::ggml_flash_attn_ext(ctx, q, k, v, mask, scale, 0.0, 0.0);
        ggml_support::compute(ctx, out, threads);
        // The output is [d][heads][rows][streams].
        let out_data = (*out).data as *const f32;
        let result = (0..streams)
            .map(|s| {
                (0..rows)
                    .map(|r| {
                        std::slice::from_raw_parts(
                            out_data.add((s * rows + r) * shape.heads * d),
                            shape.heads * d,
                        )
                        .to_vec()
                    })
                    .collect()
            })
            .collect();
        sys::ggml_free(ctx);
        result
    }
}

fn f16_bits(value: f32) -> u16 {
    unsafe { sys::ggml_fp32_to_fp16(value) }
}

fn f16_round(value: f32) -> f32 {
    unsafe { sys::ggml_fp16_to_fp32(sys::ggml_fp32_to_fp16(value)) }
}

/// Softmax attention of one query row in f64, over cells 0..=last_visible, with K and V
/// rounded to f16 as the cache holds them.
fn reference(shape: Shape, sequence: &Sequence, row: usize) -> Vec<f32> {
    let d = shape.head_dim;
    let (query, last_visible) = &sequence.queries[row];
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0f32; shape.heads * d];
    for h in 0..shape.heads {
        let kv = h / (shape.heads / shape.kv_heads);
        let at = |data: &[f32], c: usize, i: usize| {
            f16_round(data[(c * shape.kv_heads + kv) * d + i]) as f64
        };
        let scores: Vec<f64> = (0..=*last_visible)
            .map(|c| {
                (0..d)
                    .map(|i| query[h * d + i] as f64 * at(&sequence.keys, c, i))
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::MIN, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for i in 0..d {
            let value: f64 = weights
                .iter()
                .enumerate()
                .map(|(c, w)| w * at(&sequence.values, c, i))
                .sum();
            out[h * d + i] = (value / total) as f32;
        }
    }
    out
}

/// A sequence of `rows` random query rows at consecutive positions ending after the target's,
/// with the target row at index `target_row`.
fn prefill_chunk(shape: Shape, view_cells: usize, rows: usize, target_row: usize) -> Sequence {
    let mut sequence = target_sequence(shape, view_cells, 0x57a1e, &target_query(shape));
    let target = sequence.queries.pop().expect("target row");
    let mut numbers = Numbers(0x000c_4a24);
    let first_position = TARGET_POSITION - target_row;
    sequence.queries = (0..rows)
        .map(|r| {
            if r == target_row {
                target.clone()
            } else {
                (
                    numbers.values(shape.heads * shape.head_dim),
                    first_position + r,
                )
            }
        })
        .collect();
    sequence
}

fn another_sequence(shape: Shape, view_cells: usize, seed: u64) -> Sequence {
    let per_cell = shape.kv_heads * shape.head_dim;
    let mut numbers = Numbers(seed);
    Sequence {
        keys: numbers.values(view_cells * per_cell),
        values: numbers.values(view_cells * per_cell),
        queries: vec![(numbers.values(shape.heads * shape.head_dim), view_cells / 3)],
    }
}

fn assert_row_is_batch_invariant(shape: Shape) {
    let query = target_query(shape);
    // Alone, one thread, a view padded to 320 cells.
    let alone = flash_attention(shape, &[target_sequence(shape, 320, 1, &query)], 1)[0][0].clone();
    // One row over a 1,024-cell view, two threads.
    let long_view =
        flash_attention(shape, &[target_sequence(shape, 1024, 2, &query)], 2)[0][0].clone();
    // Row 37 of an 80-row prefill chunk.
    let chunk = flash_attention(shape, &[prefill_chunk(shape, 320, 80, 37)], 2)[0][37].clone();
    // The second of four sequences decoding together.
    let batch = [
        another_sequence(shape, 320, 11),
        target_sequence(shape, 320, 3, &query),
        another_sequence(shape, 320, 12),
        another_sequence(shape, 320, 13),
    ];
    let batched = flash_attention(shape, &batch, 2)[1][0].clone();

    let expected = reference(shape, &target_sequence(shape, 320, 1, &query), 0);
    for (got, want) in alone.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-4, "alone: {got} against f64 {want}");
    }
    assert_same_bits(&long_view, &alone, "over a 1,024-cell view");
    assert_same_bits(&chunk, &alone, "inside an 80-row prefill chunk");
    assert_same_bits(&batched, &alone, "beside three other sequences");
}

fn assert_same_bits(got: &[f32], alone: &[f32], case: &str) {
    let differing = got
        .iter()
        .zip(alone)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert!(
        got.len() == alone.len() && differing == 0,
        "{case}: {differing} of {} elements differ from the row computed alone",
        alone.len()
    );
}

#[test]
fn a_query_row_gets_the_same_bits_alone_in_a_chunk_over_a_long_view_and_batched() {
    assert_row_is_batch_invariant(SMOLLM2);
}

#[test]
fn a_gemma_shaped_row_gets_the_same_bits_whatever_the_batch() {
    assert_row_is_batch_invariant(GEMMA3);
}

#[test]
fn the_portable_path_is_batch_invariant_too() {
    assert_row_is_batch_invariant(ODD_HEADS);
}

#[test]
fn every_row_of_a_prefill_chunk_matches_attention_in_f64() {
    let shape = SMOLLM2;
    let chunk = prefill_chunk(shape, 320, 80, 37);
    let computed = flash_attention(shape, std::slice::from_ref(&chunk), 2);
    for (row, got) in computed[0].iter().enumerate() {
        let want = reference(shape, &chunk, row);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "row {row}: {g} against f64 {w}");
        }
    }
}
