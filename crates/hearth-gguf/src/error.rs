//! The one error type of this crate.

use std::path::PathBuf;

use crate::GgmlType;

/// Everything that can be wrong with a GGUF file, or with a question asked of its metadata.
///
/// Offsets are absolute byte positions from the start of the file. Context strings name the
/// part being read, e.g. `value of metadata key 'llama.block_count'` or `tensor info #3`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The input ends before the structure does, but the file may be longer: the caller gave a
    /// prefix (for example the first megabytes fetched with an HTTP Range request) and can
    /// fetch at least `needed_bytes` bytes from the start of the file and parse again.
    #[error(
        "input ends at byte {available_bytes}; reading {context} needs the first \
         {needed_bytes} bytes of the file"
    )]
    Truncated {
        needed_bytes: u64,
        available_bytes: u64,
        context: String,
    },

    /// The structure needs bytes beyond the known end of the file: the file is truncated or
    /// corrupt, and fetching more will not help.
    #[error(
        "reading {context} at offset {offset} needs the first {needed_bytes} bytes, \
         but the file is only {file_length} bytes long"
    )]
    UnexpectedEndOfFile {
        offset: u64,
        needed_bytes: u64,
        file_length: u64,
        context: String,
    },

    #[error("reading GGUF at offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },

    #[error("opening GGUF file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("not a GGUF file: the first four bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },

    #[error("unsupported GGUF version {version}: this reader supports versions 2 and 3")]
    UnsupportedVersion { version: u32 },

    /// The version reads as a byte-swapped small number: a big-endian GGUF file.
    #[error(
        "GGUF version field reads {version:#010x}: this looks like a big-endian GGUF file, \
         which is not supported"
    )]
    BigEndianFile { version: u32 },

    /// A tensor count, metadata count or array length that the file cannot hold or that is
    /// above this crate's sanity bound.
    #[error("{what} at offset {offset} is {count}, more than the limit of {limit}")]
    CountTooLarge {
        what: String,
        count: u64,
        limit: u64,
        offset: u64,
    },

    #[error("{context} at offset {offset} has length {length}, more than the limit of {limit}")]
    StringTooLong {
        context: String,
        offset: u64,
        length: u64,
        limit: u64,
    },

    #[error("{context} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { context: String, offset: u64 },

    #[error("metadata key #{index} at offset {offset} is empty")]
    EmptyKey { index: u64, offset: u64 },

    #[error("metadata key '{key}' at offset {offset} appears more than once")]
    DuplicateKey { key: String, offset: u64 },

    #[error("metadata key '{key}' has unknown value type {type_tag} at offset {offset}")]
    UnknownValueType {
        key: String,
        type_tag: u32,
        offset: u64,
    },

    #[error(
        "metadata key '{key}' has an array of unknown element type {type_tag} at offset {offset}"
    )]
    UnknownArrayElementType {
        key: String,
        type_tag: u32,
        offset: u64,
    },

    #[error("metadata key '{key}' nests arrays more than {limit} deep at offset {offset}")]
    ArrayNestingTooDeep {
        key: String,
        offset: u64,
        limit: u32,
    },

    #[error(
        "metadata key '{key}' has bool byte {value} at offset {offset}; only 0 and 1 are valid"
    )]
    InvalidBool { key: String, offset: u64, value: u8 },

    #[error("alignment {alignment} (general.alignment) is not a power of two")]
    InvalidAlignment { alignment: u64 },

    #[error("metadata key '{key}' is {actual}, expected {expected}")]
    TypeMismatch {
        key: String,
        expected: &'static str,
        actual: String,
    },

    #[error("metadata key '{key}' is missing")]
    MissingKey { key: String },

    #[error("metadata key '{key}' has value {value}, expected {expected}")]
    ValueOutOfRange {
        key: String,
        value: String,
        expected: String,
    },

    #[error("tensor name at offset {offset} is {length} bytes long; the limit is {limit}")]
    TensorNameTooLong {
        offset: u64,
        length: u64,
        limit: u64,
    },

    #[error("tensor name '{name}' at offset {offset} appears more than once")]
    DuplicateTensorName { name: String, offset: u64 },

    #[error("tensor '{tensor}' has {n_dims} dimensions; the limit is {limit}")]
    TooManyDimensions {
        tensor: String,
        n_dims: u32,
        limit: u32,
    },

    #[error("tensor '{tensor}' dimension {dimension_index} is {value}, more than i64::MAX")]
    DimensionTooLarge {
        tensor: String,
        dimension_index: usize,
        value: u64,
    },

    #[error("tensor '{tensor}' has dimensions {dimensions:?} whose element count overflows i64")]
    ElementCountOverflow {
        tensor: String,
        dimensions: Vec<u64>,
    },

    #[error("tensor '{tensor}' has unknown or removed ggml type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },

    #[error(
        "tensor '{tensor}' of type {ggml_type} has rows of {row_length} elements, \
         not a multiple of the block size {block_size}"
    )]
    RowNotMultipleOfBlock {
        tensor: String,
        ggml_type: GgmlType,
        row_length: u64,
        block_size: u64,
    },

    #[error("tensor '{tensor}' has a byte size that overflows u64")]
    TensorSizeOverflow { tensor: String },

    #[error(
        "tensor '{tensor}' has data offset {offset}, not a multiple of the alignment {alignment}"
    )]
    UnalignedTensorOffset {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    /// llama.cpp requires tensor data to be laid out in tensor-info order, each tensor padded
    /// to the alignment; a file that breaks this cannot be loaded by it.
    #[error(
        "tensor '{tensor}' has data offset {offset}, expected {expected} \
         (tensor data must follow tensor-info order, each padded to the alignment)"
    )]
    TensorOffsetMismatch {
        tensor: String,
        offset: u64,
        expected: u64,
    },

    #[error("the data section overflows u64 at tensor '{tensor}'")]
    DataSectionOverflow { tensor: String },

    #[error(
        "tensor '{tensor}' data spans bytes {data_start}..{data_end}, \
         past the end of the {file_length}-byte file"
    )]
    TensorDataOutOfBounds {
        tensor: String,
        data_start: u64,
        data_end: u64,
        file_length: u64,
    },

    #[error("metadata key '{key}' has {length} per-layer values, but the model has {block_count} layers")]
    PerLayerLengthMismatch {
        key: String,
        length: u64,
        block_count: u64,
    },
}

impl GgufError {
    /// Whether parsing more of the same file would get further: true only for
    /// [`GgufError::Truncated`].
    pub fn is_truncated(&self) -> bool {
        matches!(self, GgufError::Truncated { .. })
    }

    /// For [`GgufError::Truncated`], how many bytes from the start of the file to fetch before
    /// trying again.
    pub fn needed_bytes(&self) -> Option<u64> {
        match self {
            GgufError::Truncated { needed_bytes, .. } => Some(*needed_bytes),
            _ => None,
        }
    }
}
