//! The minimal GGUF header reader on the real test model.

use hearth_models::{summarize_gguf, ModelsError};

use crate::support::{smollm2_bytes, smollm2_path};

#[test]
fn summarizes_the_real_smollm2_model() {
    let summary = summarize_gguf(&smollm2_path()).unwrap();
    assert_eq!(summary.gguf_version, 3);
    assert_eq!(summary.architecture.as_deref(), Some("llama"));
    assert_eq!(summary.context_length, Some(8192));
    assert_eq!(summary.block_count, Some(30));
    assert_eq!(summary.file_type, Some(3));
    assert_eq!(summary.quantization.as_deref(), Some("Q4_1"));
    assert!(summary.has_chat_template);
    assert_eq!(summary.parameter_count, Some(134_515_008));
    assert_eq!(summary.tensor_count, 272);
    assert_eq!(summary.metadata_count, 33);
}

#[test]
fn a_truncated_real_header_is_an_error() {
    let bytes = smollm2_bytes();
    let directory = tempfile::tempdir().unwrap();
    for length in [3usize, 24, 4096, 1024 * 1024] {
        let path = directory.path().join(format!("truncated-{length}.gguf"));
        std::fs::write(&path, &bytes[..length]).unwrap();
        let error = summarize_gguf(&path).unwrap_err();
        assert!(
            matches!(error, ModelsError::InvalidGguf { .. }),
            "{length}: {error}"
        );
    }
}
