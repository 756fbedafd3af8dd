//! A parsed GGUF file: how to get one, and typed access to its metadata and tensor infos.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::Range;
use std::path::Path;

use crate::parser::Parser;
use crate::source::{ReaderSource, SliceSource};
use crate::value::{MetadataArray, MetadataValue};
use crate::{GgmlType, GgufError};

/// Buffer size for streams: big enough that a 150,000-token vocabulary costs few system calls.
const STREAM_BUFFER_BYTES: usize = 256 * 1024;

/// One metadata key and its value, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataEntry {
    pub key: String,
    pub value: MetadataValue,
}

/// One tensor's description. The tensor's bytes are not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions as stored (ggml's `ne`, innermost first); at most [`crate::limits::GGML_MAX_DIMS`].
    pub dimensions: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the tensor's data from the start of the data section.
    pub offset: u64,
    /// Product of the dimensions: the tensor's parameter count.
    pub element_count: u64,
    /// Bytes of data: `element_count / block_size * block_byte_size`.
    pub byte_size: u64,
}

/// A validated GGUF file's header, metadata and tensor infos.
///
/// Getting one means every check passed: see the crate documentation for the list.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub(crate) version: u32,
    pub(crate) alignment: u64,
    pub(crate) metadata: Vec<MetadataEntry>,
    pub(crate) metadata_index: HashMap<String, usize>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) tensor_index: HashMap<String, usize>,
    pub(crate) tensor_infos_end: u64,
    pub(crate) data_offset: u64,
    pub(crate) data_section_length: u64,
    pub(crate) file_length: Option<u64>,
}

impl GgufFile {
    /// Parses a whole file held in memory, including the check that every tensor's data lies
    /// inside it. A short input is a broken file here, never [`GgufError::Truncated`].
    pub fn parse(file_bytes: &[u8]) -> Result<GgufFile, GgufError> {
        Parser::new(SliceSource::new(file_bytes), Some(file_bytes.len() as u64)).parse()
    }

    /// Parses the header, metadata and tensor infos from the first bytes of a file, for
    /// example an HTTP Range response. Tensor data need not be present.
    ///
    /// `file_length` is the whole file's length when known (a Range response's
    /// `Content-Range` gives it): then counts are checked against it and tensor data must lie
    /// within it. When the prefix is too short, the error is [`GgufError::Truncated`] with the
    /// number of bytes to fetch before trying again; bytes of `prefix` past `file_length` are
    /// ignored.
    ///
    /// `needed_bytes` is a lower bound: the parser cannot know how long the rest of a
    /// 262,144-token vocabulary is before reading it. Fetching at least twice the previous
    /// prefix each time keeps the round trips few (a 6 MiB header from a 1 MiB start: four).
    pub fn parse_prefix(prefix: &[u8], file_length: Option<u64>) -> Result<GgufFile, GgufError> {
        let usable = match file_length {
            Some(file_length) => {
                let usable_length = usize::try_from(file_length).unwrap_or(usize::MAX);
                &prefix[..prefix.len().min(usable_length)]
            }
            None => prefix,
        };
        Parser::new(SliceSource::new(usable), file_length).parse()
    }

    /// Parses the header, metadata and tensor infos from a stream, reading no further than the
    /// end of the tensor infos (though buffering may read ahead). `file_length` means what it
    /// means for [`GgufFile::parse_prefix`]; a stream that ends early gives
    /// [`GgufError::Truncated`] when the length is unknown.
    pub fn read_from<R: Read>(reader: R, file_length: Option<u64>) -> Result<GgufFile, GgufError> {
        let buffered = BufReader::with_capacity(STREAM_BUFFER_BYTES, reader);
        Parser::new(ReaderSource::new(buffered), file_length).parse()
    }

    /// Opens a file on disk and validates it without reading the tensor data: the header,
    /// metadata and tensor infos are read, and every tensor's data must lie inside the file.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let open_error = |source| GgufError::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(open_error)?;
        let file_length = file.metadata().map_err(open_error)?.len();
        GgufFile::read_from(file, Some(file_length))
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment: `general.alignment`, or 32 when absent.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// All metadata entries in file order.
    pub fn metadata(&self) -> &[MetadataEntry] {
        &self.metadata
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index
            .get(name)
            .and_then(|index| self.tensors.get(*index))
    }

    /// Absolute offset where the tensor infos end (the header's length before padding): the
    /// bytes a caller must fetch to parse this file's header.
    pub fn tensor_infos_end(&self) -> u64 {
        self.tensor_infos_end
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Length of the data section with every tensor padded to the alignment. The file may end
    /// up to one alignment's padding earlier.
    pub fn data_section_length(&self) -> u64 {
        self.data_section_length
    }

    /// The whole file's length, when it was known to the parser.
    pub fn file_length(&self) -> Option<u64> {
        self.file_length
    }

    /// Absolute byte range of `tensor`'s data in the file.
    pub fn tensor_data_range(&self, tensor: &TensorInfo) -> Range<u64> {
        // Both sums were checked for overflow while parsing.
        let start = self.data_offset.saturating_add(tensor.offset);
        start..start.saturating_add(tensor.byte_size)
    }

    /// `tensor`'s bytes within `file_bytes` (the whole file or a long enough prefix), or
    /// `None` when they are not all there.
    pub fn tensor_data<'bytes>(
        &self,
        file_bytes: &'bytes [u8],
        tensor: &TensorInfo,
    ) -> Option<&'bytes [u8]> {
        let range = self.tensor_data_range(tensor);
        let start = usize::try_from(range.start).ok()?;
        let end = usize::try_from(range.end).ok()?;
        file_bytes.get(start..end)
    }

    /// Sum of every tensor's element count: the model's parameter count.
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().fold(0u64, |total, tensor| {
            total.saturating_add(tensor.element_count)
        })
    }

    /// Sum of every tensor's data bytes, without padding: the weights' size in memory.
    pub fn total_tensor_bytes(&self) -> u64 {
        // Bounded by the data section length, which was computed with checked arithmetic.
        self.tensors
            .iter()
            .fold(0u64, |total, tensor| total.saturating_add(tensor.byte_size))
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata_index
            .get(key)
            .and_then(|index| self.metadata.get(*index))
            .map(|entry| &entry.value)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.metadata_index.contains_key(key)
    }

    /// The value under `key` as an unsigned integer. Any integer type is accepted (writers
    /// disagree on widths); a negative value or a non-integer is an error. `Ok(None)` when the
    /// key is absent.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        if let Some(unsigned) = value.as_u64() {
            return Ok(Some(unsigned));
        }
        match value.as_i64() {
            Some(negative) => Err(GgufError::ValueOutOfRange {
                key: key.to_owned(),
                value: negative.to_string(),
                expected: "a non-negative integer".to_owned(),
            }),
            None => Err(type_mismatch(key, "an integer", value)),
        }
    }

    /// The value under `key` as a signed integer (any integer type that fits `i64`).
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, GgufError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value.as_i64() {
            Some(signed) => Ok(Some(signed)),
            None => match value.as_u64() {
                Some(too_large) => Err(GgufError::ValueOutOfRange {
                    key: key.to_owned(),
                    value: too_large.to_string(),
                    expected: "an integer that fits i64".to_owned(),
                }),
                None => Err(type_mismatch(key, "an integer", value)),
            },
        }
    }

    /// The value under `key` as a float (f32 or f64).
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.get_typed(key, "a float", MetadataValue::as_f64)
    }

    /// The value under `key` as a bool.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get_typed(key, "a bool", MetadataValue::as_bool)
    }

    /// The value under `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.get_typed(key, "a string", MetadataValue::as_str)
    }

    /// The value under `key` as an array.
    pub fn get_array(&self, key: &str) -> Result<Option<&MetadataArray>, GgufError> {
        self.get_typed(key, "an array", MetadataValue::as_array)
    }

    fn get_typed<'file, T>(
        &'file self,
        key: &str,
        expected: &'static str,
        convert: impl Fn(&'file MetadataValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => match convert(value) {
                Some(converted) => Ok(Some(converted)),
                None => Err(type_mismatch(key, expected, value)),
            },
        }
    }

    /// Like [`GgufFile::get_u64`], but a missing key is [`GgufError::MissingKey`].
    pub fn require_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_u64(key)?.ok_or_else(|| missing(key))
    }

    /// Like [`GgufFile::get_str`], but a missing key is [`GgufError::MissingKey`].
    pub fn require_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_str(key)?.ok_or_else(|| missing(key))
    }
}

pub(crate) fn type_mismatch(key: &str, expected: &'static str, value: &MetadataValue) -> GgufError {
    GgufError::TypeMismatch {
        key: key.to_owned(),
        expected,
        actual: value.type_description(),
    }
}

pub(crate) fn missing(key: &str) -> GgufError {
    GgufError::MissingKey {
        key: key.to_owned(),
    }
}
