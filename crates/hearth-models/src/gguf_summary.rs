//! The summary of a GGUF file that manifests and listings carry, read with `hearth-gguf`.
//!
//! `hearth-gguf` parses and validates the header, every metadata value and the tensor infos
//! (counts and lengths bounded, tensor data inside the file) without reading tensor data, so a
//! file that would make llama.cpp misbehave is refused here, at import or download time, with
//! the reader's own description of what is wrong. The summary itself is lenient about what a
//! valid file may lack: a missing or oddly typed hyperparameter is just absent from it.

use std::path::Path;

use hearth_gguf::{GgufError, GgufFile};
use serde::{Deserialize, Serialize};

use crate::error::{ModelsError, Result};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// What the library records about a model file: enough to list it, pick a quantization and
/// plan memory without opening the file again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GgufSummary {
    pub gguf_version: u32,
    /// `general.architecture`, such as `llama`, `qwen2` or `gemma3`.
    pub architecture: Option<String>,
    /// `general.name`, the human name the converter wrote.
    pub name: Option<String>,
    /// Sum of all tensor elements: the parameter count, embeddings included.
    pub parameter_count: Option<u64>,
    /// `<architecture>.context_length`: the context the model was trained for.
    pub context_length: Option<u64>,
    /// `<architecture>.block_count`: the number of layers.
    pub block_count: Option<u64>,
    /// `general.file_type`, llama.cpp's `llama_ftype` number.
    pub file_type: Option<u32>,
    /// The quantization name for `file_type` (`Q4_K_M`, `Q8_0`...), when known.
    pub quantization: Option<String>,
    /// Whether the file carries `tokenizer.chat_template`.
    pub has_chat_template: bool,
    pub tensor_count: u64,
    pub metadata_count: u64,
}

/// Reads and validates the GGUF header of `path` and summarizes it.
pub fn summarize_gguf(path: &Path) -> Result<GgufSummary> {
    let file = GgufFile::open(path).map_err(|error| match error {
        GgufError::Open { source, .. } => ModelsError::io("cannot open", path, source),
        GgufError::Io { source, .. } if source.kind() != std::io::ErrorKind::UnexpectedEof => {
            ModelsError::io("cannot read", path, source)
        }
        other => ModelsError::InvalidGguf {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })?;
    Ok(summarize(&file))
}

/// llama.cpp's name for a `general.file_type` value (`enum llama_ftype`).
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    hearth_gguf::file_type_name(file_type)
}

fn summarize(file: &GgufFile) -> GgufSummary {
    let architecture = file.architecture().ok().map(str::to_string);
    // Read raw rather than through the checked accessors: the summary records what the file
    // says (a hostile block count included); the engine's load checks decide what runs.
    let architecture_integer = |suffix: &str| {
        architecture.as_ref().and_then(|architecture| {
            file.get_u64(&format!("{architecture}.{suffix}"))
                .ok()
                .flatten()
        })
    };
    let file_type = file.file_type().ok().flatten();
    let tensor_count = file.tensors().len() as u64;
    GgufSummary {
        gguf_version: file.version(),
        name: file.model_name().ok().flatten().map(str::to_string),
        parameter_count: (tensor_count > 0).then(|| file.parameter_count()),
        context_length: architecture_integer("context_length"),
        block_count: architecture_integer("block_count"),
        file_type,
        quantization: file_type.and_then(file_type_name).map(str::to_string),
        has_chat_template: file.contains_key("tokenizer.chat_template"),
        tensor_count,
        metadata_count: file.metadata().len() as u64,
        architecture,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_gguf::{GgmlType, GgufBuilder, MetadataArray, MetadataValue, StringArray};

    /// A small but complete file: architecture, context length, file type, a string array, a
    /// chat template and two tensors with their data.
    fn synthetic_file() -> Vec<u8> {
        let tokens: StringArray = ["<s>", "</s>"].into_iter().collect();
        GgufBuilder::new()
            .metadata(
                "general.architecture",
                MetadataValue::String("qwen2".into()),
            )
            .metadata("qwen2.context_length", MetadataValue::U32(32768))
            .metadata("general.file_type", MetadataValue::U32(15))
            .metadata(
                "tokenizer.ggml.tokens",
                MetadataValue::Array(MetadataArray::String(tokens)),
            )
            .metadata(
                "tokenizer.chat_template",
                MetadataValue::String("{{ messages }}".into()),
            )
            .tensor("a", GgmlType::F32, &[4, 8])
            .tensor("b", GgmlType::F32, &[16])
            .build()
    }

    fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("model.gguf");
        std::fs::write(&path, bytes).unwrap();
        (directory, path)
    }

    #[test]
    fn summarizes_a_synthetic_file() {
        let (_directory, path) = write_temp(&synthetic_file());
        let summary = summarize_gguf(&path).unwrap();
        assert_eq!(summary.architecture.as_deref(), Some("qwen2"));
        assert_eq!(summary.context_length, Some(32768));
        assert_eq!(summary.block_count, None);
        assert_eq!(summary.quantization.as_deref(), Some("Q4_K_M"));
        assert!(summary.has_chat_template);
        assert_eq!(summary.parameter_count, Some(4 * 8 + 16));
        assert_eq!(summary.tensor_count, 2);
        assert_eq!(summary.metadata_count, 5);
    }

    #[test]
    fn every_truncation_is_an_invalid_gguf_error() {
        let file = synthetic_file();
        for length in 0..file.len() {
            let (_directory, path) = write_temp(&file[..length]);
            let result = summarize_gguf(&path);
            assert!(
                matches!(result, Err(ModelsError::InvalidGguf { .. })),
                "length {length}: {result:?}"
            );
        }
    }

    #[test]
    fn hostile_counts_and_a_wrong_magic_are_rejected() {
        let hostile = GgufBuilder::new().declared_tensor_count(u64::MAX).build();
        let (_directory, path) = write_temp(&hostile);
        assert!(matches!(
            summarize_gguf(&path),
            Err(ModelsError::InvalidGguf { .. })
        ));

        let mut file = synthetic_file();
        file[0] = b'X';
        let (_directory, path) = write_temp(&file);
        let error = summarize_gguf(&path).unwrap_err().to_string();
        assert!(error.contains("not a GGUF file"), "{error}");
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let directory = tempfile::tempdir().unwrap();
        let error = summarize_gguf(&directory.path().join("absent.gguf")).unwrap_err();
        assert!(matches!(error, ModelsError::Io { .. }), "{error:?}");
    }

    #[test]
    fn every_single_byte_corruption_is_handled() {
        let file = synthetic_file();
        for position in 0..file.len() {
            for replacement in [0x00u8, 0xff, 0x7f] {
                let mut corrupted = file.clone();
                corrupted[position] = replacement;
                let (_directory, path) = write_temp(&corrupted);
                // Either a summary or an error: what matters is that nothing panics or hangs.
                let _ = summarize_gguf(&path);
            }
        }
    }
}
