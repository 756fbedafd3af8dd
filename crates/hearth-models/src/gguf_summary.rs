//! A minimal GGUF header reader that fills [`GgufSummary`] for manifests and listings.
//!
//! It reads the header, the metadata keys it needs (skipping all others without loading them)
//! and the tensor descriptors (to count parameters); tensor data is never touched. Every count
//! and length from the file is bounded before it is used, so a hostile file yields an error,
//! never a panic or a huge allocation. The full reader and validator is `hearth-gguf`; this
//! function is the one place to switch over to it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelsError, Result};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// GGUF versions this reader understands (1 used 32-bit counts and is long obsolete).
const SUPPORTED_GGUF_VERSIONS: [u32; 2] = [2, 3];
/// Caps far above any real model (a large model has a few hundred keys and a few thousand
/// tensors) and far below what could exhaust memory or time.
const MAX_METADATA_ENTRIES: u64 = 65_536;
const MAX_TENSORS: u64 = 1_048_576;
/// Longest key name; the spec limits keys to 65,535 bytes.
const MAX_KEY_BYTES: u64 = 65_535;
/// Longest string value we read into memory (names, architecture); longer values are skipped.
const MAX_KEPT_STRING_BYTES: u64 = 4096;
/// GGML tensors have at most four dimensions.
const MAX_TENSOR_DIMENSIONS: u32 = 4;
/// Nesting depth of arrays of arrays we follow while skipping.
const MAX_ARRAY_NESTING: u32 = 4;
/// Bytes read per step through a file; the header of a model is a few megabytes at most.
const READ_BUFFER_BYTES: usize = 256 * 1024;

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

/// Reads the GGUF header of `path` and summarizes it.
pub fn summarize_gguf(path: &Path) -> Result<GgufSummary> {
    let file = File::open(path).map_err(|error| ModelsError::io("cannot open", path, error))?;
    let mut reader = HeaderReader {
        inner: BufReader::with_capacity(READ_BUFFER_BYTES, file),
    };
    summarize(&mut reader).map_err(|problem| match problem {
        HeaderProblem::Io(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            ModelsError::InvalidGguf {
                path: path.to_path_buf(),
                reason: "the file ends inside the header".to_string(),
            }
        }
        HeaderProblem::Io(error) => ModelsError::io("cannot read", path, error),
        HeaderProblem::Invalid(reason) => ModelsError::InvalidGguf {
            path: path.to_path_buf(),
            reason,
        },
    })
}

/// llama.cpp's name for a `general.file_type` value (`enum llama_ftype`).
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

enum HeaderProblem {
    Io(std::io::Error),
    Invalid(String),
}

impl From<std::io::Error> for HeaderProblem {
    fn from(error: std::io::Error) -> Self {
        HeaderProblem::Io(error)
    }
}

type HeaderResult<T> = std::result::Result<T, HeaderProblem>;

fn invalid<T>(reason: impl Into<String>) -> HeaderResult<T> {
    Err(HeaderProblem::Invalid(reason.into()))
}

/// GGUF metadata value types, numbered as in the specification.
const TYPE_UINT8: u32 = 0;
const TYPE_INT8: u32 = 1;
const TYPE_UINT16: u32 = 2;
const TYPE_INT16: u32 = 3;
const TYPE_UINT32: u32 = 4;
const TYPE_INT32: u32 = 5;
const TYPE_FLOAT32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const TYPE_UINT64: u32 = 10;
const TYPE_INT64: u32 = 11;
const TYPE_FLOAT64: u32 = 12;

/// Size in bytes of a fixed-size value type, or `None` for strings and arrays.
fn fixed_value_size(value_type: u32) -> Option<u64> {
    match value_type {
        TYPE_UINT8 | TYPE_INT8 | TYPE_BOOL => Some(1),
        TYPE_UINT16 | TYPE_INT16 => Some(2),
        TYPE_UINT32 | TYPE_INT32 | TYPE_FLOAT32 => Some(4),
        TYPE_UINT64 | TYPE_INT64 | TYPE_FLOAT64 => Some(8),
        _ => None,
    }
}

/// A metadata value we chose to keep.
enum KeptValue {
    Text(String),
    Integer(u64),
    Other,
}

struct HeaderReader {
    inner: BufReader<File>,
}

impl HeaderReader {
    fn read_array<const N: usize>(&mut self) -> HeaderResult<[u8; N]> {
        let mut bytes = [0u8; N];
        self.inner.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    fn read_u32(&mut self) -> HeaderResult<u32> {
        Ok(u32::from_le_bytes(self.read_array()?))
    }

    fn read_u64(&mut self) -> HeaderResult<u64> {
        Ok(u64::from_le_bytes(self.read_array()?))
    }

    fn skip(&mut self, byte_count: u64) -> HeaderResult<()> {
        // Skipping past the end is caught by the next read, which then hits end of file.
        let Ok(offset) = i64::try_from(byte_count) else {
            return invalid("a length in the header is beyond any file size");
        };
        self.inner.seek_relative(offset)?;
        Ok(())
    }

    fn read_string_bytes(&mut self, limit: u64, what: &str) -> HeaderResult<Vec<u8>> {
        let length = self.read_u64()?;
        if length > limit {
            return invalid(format!("{what} is {length} bytes long (limit {limit})"));
        }
        let mut bytes = vec![0u8; length as usize];
        self.inner.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    /// Reads a string value if it is short, skips it otherwise.
    fn read_or_skip_string(&mut self) -> HeaderResult<Option<String>> {
        let length = self.read_u64()?;
        if length > MAX_KEPT_STRING_BYTES {
            self.skip(length)?;
            return Ok(None);
        }
        let mut bytes = vec![0u8; length as usize];
        self.inner.read_exact(&mut bytes)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn skip_value(&mut self, value_type: u32, nesting: u32) -> HeaderResult<()> {
        if let Some(size) = fixed_value_size(value_type) {
            return self.skip(size);
        }
        match value_type {
            TYPE_STRING => {
                let length = self.read_u64()?;
                self.skip(length)
            }
            TYPE_ARRAY => {
                if nesting >= MAX_ARRAY_NESTING {
                    return invalid("arrays are nested too deeply");
                }
                let element_type = self.read_u32()?;
                let element_count = self.read_u64()?;
                if let Some(size) = fixed_value_size(element_type) {
                    let Some(total) = element_count.checked_mul(size) else {
                        return invalid("an array length overflows");
                    };
                    return self.skip(total);
                }
                if element_type != TYPE_STRING && element_type != TYPE_ARRAY {
                    return invalid(format!("unknown array element type {element_type}"));
                }
                for _ in 0..element_count {
                    self.skip_value(element_type, nesting + 1)?;
                }
                Ok(())
            }
            other => invalid(format!("unknown metadata value type {other}")),
        }
    }

    /// Reads a value of a kept key: short strings and unsigned or non-negative integers.
    fn read_kept_value(&mut self, value_type: u32) -> HeaderResult<KeptValue> {
        Ok(match value_type {
            TYPE_STRING => self
                .read_or_skip_string()?
                .map_or(KeptValue::Other, KeptValue::Text),
            TYPE_UINT8 => KeptValue::Integer(u64::from(self.read_array::<1>()?[0])),
            TYPE_UINT16 => KeptValue::Integer(u64::from(u16::from_le_bytes(self.read_array()?))),
            TYPE_UINT32 => KeptValue::Integer(u64::from(self.read_u32()?)),
            TYPE_UINT64 => KeptValue::Integer(self.read_u64()?),
            TYPE_INT32 => {
                let value = i32::from_le_bytes(self.read_array()?);
                u64::try_from(value).map_or(KeptValue::Other, KeptValue::Integer)
            }
            TYPE_INT64 => {
                let value = i64::from_le_bytes(self.read_array()?);
                u64::try_from(value).map_or(KeptValue::Other, KeptValue::Integer)
            }
            other => {
                self.skip_value(other, 0)?;
                KeptValue::Other
            }
        })
    }
}

/// Keys whose values the summary uses; everything else is skipped unread.
fn is_kept_key(key: &str) -> bool {
    matches!(
        key,
        "general.architecture" | "general.name" | "general.file_type"
    ) || key.ends_with(".context_length")
        || key.ends_with(".block_count")
}

fn summarize(reader: &mut HeaderReader) -> HeaderResult<GgufSummary> {
    let magic: [u8; 4] = reader.read_array()?;
    if magic != GGUF_MAGIC {
        return invalid(format!(
            "it starts with {magic:02x?}, not the GGUF magic \"GGUF\""
        ));
    }
    let gguf_version = reader.read_u32()?;
    if !SUPPORTED_GGUF_VERSIONS.contains(&gguf_version) {
        return invalid(format!("GGUF version {gguf_version} is not supported"));
    }
    let tensor_count = reader.read_u64()?;
    let metadata_count = reader.read_u64()?;
    if tensor_count > MAX_TENSORS {
        return invalid(format!("it claims {tensor_count} tensors"));
    }
    if metadata_count > MAX_METADATA_ENTRIES {
        return invalid(format!("it claims {metadata_count} metadata entries"));
    }

    let mut kept: HashMap<String, KeptValue> = HashMap::new();
    let mut has_chat_template = false;
    for _ in 0..metadata_count {
        let key_bytes = reader.read_string_bytes(MAX_KEY_BYTES, "a metadata key")?;
        let key = String::from_utf8_lossy(&key_bytes).into_owned();
        let value_type = reader.read_u32()?;
        if key == "tokenizer.chat_template" {
            has_chat_template = true;
        }
        if is_kept_key(&key) {
            let value = reader.read_kept_value(value_type)?;
            kept.insert(key, value);
        } else {
            reader.skip_value(value_type, 0)?;
        }
    }

    let mut parameter_count: u64 = 0;
    for _ in 0..tensor_count {
        reader.read_string_bytes(MAX_KEY_BYTES, "a tensor name")?;
        let dimension_count = reader.read_u32()?;
        if dimension_count > MAX_TENSOR_DIMENSIONS {
            return invalid(format!("a tensor has {dimension_count} dimensions"));
        }
        let mut element_count: u64 = 1;
        for _ in 0..dimension_count {
            let dimension = reader.read_u64()?;
            element_count = match element_count.checked_mul(dimension) {
                Some(product) => product,
                None => return invalid("a tensor's element count overflows"),
            };
        }
        let _tensor_type = reader.read_u32()?;
        let _data_offset = reader.read_u64()?;
        parameter_count = match parameter_count.checked_add(element_count) {
            Some(sum) => sum,
            None => return invalid("the total element count overflows"),
        };
    }

    let text = |key: &str| match kept.get(key) {
        Some(KeptValue::Text(text)) => Some(text.clone()),
        _ => None,
    };
    let integer = |key: &str| match kept.get(key) {
        Some(KeptValue::Integer(value)) => Some(*value),
        _ => None,
    };
    let architecture = text("general.architecture");
    let architecture_integer = |suffix: &str| {
        architecture
            .as_ref()
            .and_then(|architecture| integer(&format!("{architecture}.{suffix}")))
    };
    let file_type = integer("general.file_type").and_then(|value| u32::try_from(value).ok());
    Ok(GgufSummary {
        gguf_version,
        name: text("general.name"),
        parameter_count: (tensor_count > 0).then_some(parameter_count),
        context_length: architecture_integer("context_length"),
        block_count: architecture_integer("block_count"),
        file_type,
        quantization: file_type.and_then(file_type_name).map(str::to_string),
        has_chat_template,
        tensor_count,
        metadata_count,
        architecture,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gguf_string(bytes: &mut Vec<u8>, text: &str) {
        bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
    }

    /// A small but complete header: architecture, context length, file type, a string array,
    /// a chat template and two tensors.
    fn synthetic_header() -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&GGUF_MAGIC);
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes()); // tensors
        bytes.extend_from_slice(&5u64.to_le_bytes()); // metadata entries
        gguf_string(&mut bytes, "general.architecture");
        bytes.extend_from_slice(&TYPE_STRING.to_le_bytes());
        gguf_string(&mut bytes, "qwen2");
        gguf_string(&mut bytes, "qwen2.context_length");
        bytes.extend_from_slice(&TYPE_UINT32.to_le_bytes());
        bytes.extend_from_slice(&32768u32.to_le_bytes());
        gguf_string(&mut bytes, "general.file_type");
        bytes.extend_from_slice(&TYPE_UINT32.to_le_bytes());
        bytes.extend_from_slice(&15u32.to_le_bytes());
        gguf_string(&mut bytes, "tokenizer.ggml.tokens");
        bytes.extend_from_slice(&TYPE_ARRAY.to_le_bytes());
        bytes.extend_from_slice(&TYPE_STRING.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        gguf_string(&mut bytes, "<s>");
        gguf_string(&mut bytes, "</s>");
        gguf_string(&mut bytes, "tokenizer.chat_template");
        bytes.extend_from_slice(&TYPE_STRING.to_le_bytes());
        gguf_string(&mut bytes, "{{ messages }}");
        for (name, dimensions) in [("a", vec![4u64, 8]), ("b", vec![16u64])] {
            gguf_string(&mut bytes, name);
            bytes.extend_from_slice(&(dimensions.len() as u32).to_le_bytes());
            for dimension in dimensions {
                bytes.extend_from_slice(&dimension.to_le_bytes());
            }
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&0u64.to_le_bytes());
        }
        bytes
    }

    fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("model.gguf");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        (directory, path)
    }

    #[test]
    fn summarizes_a_synthetic_header() {
        let (_directory, path) = write_temp(&synthetic_header());
        let summary = summarize_gguf(&path).unwrap();
        assert_eq!(summary.architecture.as_deref(), Some("qwen2"));
        assert_eq!(summary.context_length, Some(32768));
        assert_eq!(summary.quantization.as_deref(), Some("Q4_K_M"));
        assert!(summary.has_chat_template);
        assert_eq!(summary.parameter_count, Some(4 * 8 + 16));
        assert_eq!(summary.tensor_count, 2);
        assert_eq!(summary.metadata_count, 5);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let header = synthetic_header();
        for length in 0..header.len() {
            let (_directory, path) = write_temp(&header[..length]);
            let result = summarize_gguf(&path);
            assert!(
                matches!(result, Err(ModelsError::InvalidGguf { .. })),
                "length {length}: {result:?}"
            );
        }
    }

    #[test]
    fn hostile_counts_are_rejected() {
        let mut header = synthetic_header();
        header[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let (_directory, path) = write_temp(&header);
        assert!(matches!(
            summarize_gguf(&path),
            Err(ModelsError::InvalidGguf { .. })
        ));

        let mut header = synthetic_header();
        header[0] = b'X';
        let (_directory, path) = write_temp(&header);
        let error = summarize_gguf(&path).unwrap_err().to_string();
        assert!(error.contains("GGUF magic"), "{error}");
    }

    #[test]
    fn every_single_byte_corruption_is_handled() {
        let header = synthetic_header();
        for position in 0..header.len() {
            for replacement in [0x00u8, 0xff, 0x7f] {
                let mut corrupted = header.clone();
                corrupted[position] = replacement;
                let (_directory, path) = write_temp(&corrupted);
                // Either a summary or an error: what matters is that nothing panics or hangs.
                let _ = summarize_gguf(&path);
            }
        }
    }
}
