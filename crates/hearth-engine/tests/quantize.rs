//! `hearth quantize`'s engine side on the real SmolLM2 file: the Q4_1 test model converted to
//! F16 (llama.cpp's quantizer, requantizing) loads and answers coherently, progress is
//! reported per tensor, and an unknown type or an existing output is refused.

mod common;

use common::{chat, TestEngine};
use hearth_engine::quantize::{quantize, QuantizeError, QuantizeJob};
use hearth_protocol::{LoadParams, SamplingParams};

#[test]
fn the_test_model_converts_to_f16_and_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("smollm2-f16.gguf");
    let job = QuantizeJob {
        input: hearth_testkit::smollm2(),
        output: output.clone(),
        file_type: "F16".to_string(),
        force: false,
        threads: None,
    };
    let mut progress = Vec::new();
    quantize(&job, &mut |done, total| progress.push((done, total))).unwrap();
    let total = progress.last().map(|(_, total)| *total).unwrap_or(0);
    assert!(total > 100, "one progress call per tensor: {progress:?}");
    assert_eq!(progress.len() as u32, total);
    let size = std::fs::metadata(&output).unwrap().len();
    // 134.5 M parameters at two bytes each, give or take the F32 norms.
    assert!((250_000_000..300_000_000).contains(&size), "{size} bytes");

    let (mut engine, info) = TestEngine::with_model(&output, LoadParams::default());
    assert_eq!(info.n_layer, 30);
    let answer = engine
        .generate(
            chat("What is the capital of France?"),
            SamplingParams::greedy(),
            Some(16),
            &[],
        )
        .text();
    assert!(answer.contains("Paris"), "{answer}");

    let again = quantize(&job, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(again, QuantizeError::OutputExists { .. }),
        "{again}"
    );
    let bad_type = QuantizeJob {
        file_type: "Q3".to_string(),
        force: true,
        ..job
    };
    let error = quantize(&bad_type, &mut |_, _| {}).unwrap_err();
    assert!(error.to_string().contains("unknown type"), "{error}");
}
