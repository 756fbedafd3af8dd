//! A pure-Rust reader and validator for GGUF model files, versions 2 and 3, with no llama.cpp.
//!
//! Hearth reads a model's GGUF header to plan how it fits a machine before it is loaded (or
//! even downloaded: the first megabytes of a remote file from an HTTP Range request are enough),
//! and to refuse a malformed file with a clear error instead of handing it to llama.cpp, which
//! may abort the whole process on bad input. [`GgufFile`] parses the header, every metadata
//! value type (nested arrays included) and the tensor infos from a byte slice
//! ([`GgufFile::parse`], [`GgufFile::parse_prefix`]), a stream ([`GgufFile::read_from`]) or a
//! path ([`GgufFile::open`]), and offers the hyperparameters the fit planner needs
//! ([`GgufFile::block_count`], [`GgufFile::head_count_kv`],
//! [`GgufFile::sliding_window_attention`], [`GgufFile::total_tensor_bytes`], ...).
//!
//! Validation: the magic and version; every count, length and offset is checked for overflow
//! and against what the file could hold before anything is allocated (see [`limits`]); keys
//! and tensor names are unique; value types and ggml tensor types are known; at most
//! [`limits::GGML_MAX_DIMS`] dimensions whose product fits `i64`; rows are whole quantization
//! blocks; the alignment is a power of two; tensor offsets are aligned and packed in order as
//! llama.cpp requires; and tensor data lies inside the file when its length is known. Parsing
//! never panics: every failure is a [`GgufError`] naming the offset, key or tensor involved.
//! The `parse_gguf` fuzz target in the repository's `fuzz/` directory holds it to that.
//!
//! [`GgufBuilder`] writes GGUF files, valid or deliberately broken, for tests and tools;
//! [`split`] reads and writes split models (`NAME-00001-of-00003.gguf`).

mod builder;
mod error;
mod file;
mod ggml_type;
mod model;
mod parser;
mod source;
pub mod split;
mod value;

pub use builder::{GgufBuilder, RawTensor};
pub use error::GgufError;
pub use file::{GgufFile, MetadataEntry, TensorInfo};
pub use ggml_type::GgmlType;
pub use model::{file_type_name, PerLayerValue, SlidingWindowAttention};
pub use value::{MetadataArray, MetadataValue, MetadataValueType, StringArray};

/// The format's fixed values and this reader's sanity bounds.
pub mod limits {
    /// The first four bytes of every GGUF file.
    pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

    /// Data alignment when `general.alignment` is absent.
    pub const DEFAULT_ALIGNMENT: u64 = 32;

    /// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
    pub const GGML_MAX_DIMS: u32 = 4;

    /// Longest tensor name in bytes: ggml's `GGML_MAX_NAME` is 64 including the terminating
    /// NUL, and llama.cpp rejects longer names.
    pub const MAX_TENSOR_NAME_LENGTH: u64 = 63;

    /// Longest metadata key in bytes (the GGUF specification's limit).
    pub const MAX_KEY_LENGTH: u64 = 65_535;

    /// Longest string value in bytes. Chat templates are tens of kilobytes; the largest
    /// string the specification describes, `tokenizer.huggingface.json`, is a whole
    /// tokenizer.json (about 9 MiB for Llama 3).
    pub const MAX_STRING_VALUE_LENGTH: u64 = 16 * 1024 * 1024;

    /// Most tensors in one file. The largest MoE models have a few thousand.
    pub const MAX_TENSOR_COUNT: u64 = 1 << 20;

    /// Most metadata entries in one file. Real files have tens.
    pub const MAX_METADATA_COUNT: u64 = 1 << 20;

    /// Most elements in one metadata array. Vocabularies have up to a few hundred thousand
    /// tokens; T5's precompiled character map is a byte array of under a megabyte.
    pub const MAX_ARRAY_LENGTH: u64 = 1 << 28;

    /// Deepest nesting of arrays within arrays (the parser recurses once per level).
    pub const MAX_ARRAY_NESTING_DEPTH: u32 = 8;

    /// Most layers llama.cpp accepts (`LLAMA_MAX_LAYERS`); it aborts on more.
    pub const MAX_LAYERS: u64 = 512;

    /// Most experts per MoE layer llama.cpp accepts (`LLAMA_MAX_EXPERTS`); it aborts on more.
    pub const MAX_EXPERTS: u64 = 1024;
}
