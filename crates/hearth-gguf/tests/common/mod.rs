//! Helpers shared by the integration tests: a small valid file and test-model lookup.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use hearth_gguf::{GgmlType, GgufBuilder, MetadataArray, MetadataValue, StringArray};

/// A builder for a small valid llama-like file with every metadata value type, a nested array,
/// and tensors of a plain, a legacy-quantized and a k-quantized type.
pub fn valid_builder() -> GgufBuilder {
    GgufBuilder::new()
        .metadata(
            "general.architecture",
            MetadataValue::String("llama".into()),
        )
        .metadata(
            "general.name",
            MetadataValue::String("tiny test model".into()),
        )
        .metadata("general.file_type", MetadataValue::U32(15))
        .metadata("llama.block_count", MetadataValue::U32(2))
        .metadata("llama.context_length", MetadataValue::U64(4096))
        .metadata("llama.embedding_length", MetadataValue::U32(256))
        .metadata("llama.feed_forward_length", MetadataValue::I32(512))
        .metadata("llama.attention.head_count", MetadataValue::U16(4))
        .metadata(
            "llama.attention.head_count_kv",
            MetadataValue::Array(MetadataArray::U32(vec![2, 1])),
        )
        .metadata("llama.rope.freq_base", MetadataValue::F32(10000.0))
        .metadata("test.u8", MetadataValue::U8(200))
        .metadata("test.i8", MetadataValue::I8(-100))
        .metadata("test.i16", MetadataValue::I16(-30000))
        .metadata("test.i64", MetadataValue::I64(-5))
        .metadata("test.f64", MetadataValue::F64(0.125))
        .metadata("test.bool", MetadataValue::Bool(true))
        .metadata(
            "test.nested",
            MetadataValue::Array(MetadataArray::Array(vec![
                MetadataArray::I8(vec![-1, 2]),
                MetadataArray::String(["a", "bc"].into_iter().collect()),
                MetadataArray::Array(vec![MetadataArray::F64(vec![1.5])]),
                MetadataArray::Bool(vec![]),
            ])),
        )
        .metadata(
            "tokenizer.ggml.tokens",
            MetadataValue::Array(MetadataArray::String(
                ["<s>", "</s>", "héllo", ""]
                    .into_iter()
                    .collect::<StringArray>(),
            )),
        )
        .metadata(
            "tokenizer.ggml.scores",
            MetadataValue::Array(MetadataArray::F32(vec![0.0, -1.0, -2.5, 3.0])),
        )
        .metadata(
            "tokenizer.chat_template",
            MetadataValue::String("{% for m in messages %}{{ m.content }}{% endfor %}".into()),
        )
        .tensor("token_embd.weight", GgmlType::Q8_0, &[256, 4])
        .tensor("blk.0.attn_norm.weight", GgmlType::F32, &[3])
        .tensor("blk.0.ffn_up.weight", GgmlType::Q4K, &[256, 2])
}

/// The directory holding the real test models (`HEARTH_TEST_MODELS`, by default
/// `~/.cache/hearth/test-models`).
pub fn test_models_dir() -> PathBuf {
    match std::env::var_os("HEARTH_TEST_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/hearth/test-models")
        }
    }
}

/// The path of test model `file_name`; panics, never skips, when it is missing.
pub fn test_model(file_name: &str) -> PathBuf {
    let path = test_models_dir().join(file_name);
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-test-models (or set HEARTH_TEST_MODELS \
         to the directory holding it)",
        path.display()
    );
    path
}

/// The variant name of an error, from its Debug form (`BadMagic { .. }` gives `BadMagic`).
pub fn error_kind(error: &hearth_gguf::GgufError) -> String {
    let debug = format!("{error:?}");
    debug
        .split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}
