//! The GGUF parser: header, metadata, tensor infos, and the layout checks.
//!
//! Layout (all little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count,
//! the metadata entries (string key, u32 type tag, value), the tensor infos (string name, u32
//! n_dims, n_dims × u64 dimensions, u32 ggml type, u64 offset into the data section), padding
//! to the alignment, then the tensor data. A string is a u64 length and that many bytes.
//!
//! Every length read from the file is checked before it is used: against a sanity limit,
//! against what the rest of the file could hold (when the file length is known), and against
//! what the input holds (when it is a slice), so a hostile count fails before any allocation.

use std::collections::HashMap;
use std::fmt;

use crate::file::{GgufFile, TensorInfo};
use crate::limits::{
    DEFAULT_ALIGNMENT, GGML_MAX_DIMS, GGUF_MAGIC, MAX_METADATA_COUNT, MAX_STRING_VALUE_LENGTH,
    MAX_TENSOR_COUNT, MAX_TENSOR_NAME_LENGTH,
};
use crate::source::{ByteSource, ShortRead};
use crate::value::MetadataValue;
use crate::{GgmlType, GgufError};

mod metadata;

use metadata::decode_value_text;

/// The key whose u32 value overrides [`DEFAULT_ALIGNMENT`].
pub(crate) const ALIGNMENT_KEY: &str = "general.alignment";

/// Bytes of a u64 string-length prefix.
const STRING_LENGTH_BYTES: u64 = 8;
/// Smallest possible metadata entry: key length, a one-byte key, type tag, a one-byte value.
const MIN_METADATA_ENTRY_BYTES: u64 = STRING_LENGTH_BYTES + 1 + 4 + 1;
/// Smallest possible tensor info: name length, n_dims (0), ggml type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = STRING_LENGTH_BYTES + 4 + 4 + 8;
/// Smallest possible array element of type array: element type tag and length.
const MIN_NESTED_ARRAY_BYTES: u64 = 4 + 8;
/// When the input is a stream, pre-allocate at most this many elements for a declared count;
/// the vector grows past it only as elements actually arrive.
const STREAM_PREALLOCATION_LIMIT: u64 = 4096;

/// Which part of the file is being read, for error messages. Formatted only on error.
#[derive(Clone, Copy)]
enum Part<'name> {
    Magic,
    Header,
    MetadataKey { index: u64 },
    MetadataValue { key: &'name str },
    TensorInfo { index: u64 },
    TensorField { name: &'name str },
}

impl fmt::Display for Part<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Magic => write!(formatter, "the magic bytes"),
            Part::Header => write!(formatter, "the header"),
            Part::MetadataKey { index } => write!(formatter, "metadata key #{index}"),
            Part::MetadataValue { key } => write!(formatter, "value of metadata key '{key}'"),
            Part::TensorInfo { index } => write!(formatter, "tensor info #{index}"),
            Part::TensorField { name } => write!(formatter, "tensor info of '{name}'"),
        }
    }
}

pub(crate) struct Parser<S> {
    source: S,
    /// The length of the whole file when known; the input may be only a prefix of it.
    file_length: Option<u64>,
}

/// Rounds `value` up to a multiple of `alignment` (a power of two), or `None` on overflow.
fn align_up(value: u64, alignment: u64) -> Option<u64> {
    let mask = alignment - 1;
    value.checked_add(mask).map(|padded| padded & !mask)
}

impl<S: ByteSource> Parser<S> {
    pub(crate) fn new(source: S, file_length: Option<u64>) -> Self {
        Parser {
            source,
            file_length,
        }
    }

    /// The error for needing bytes up to `needed_end` that the input does not have.
    fn end_of_input_error(
        file_length: Option<u64>,
        offset: u64,
        needed_end: u64,
        available_bytes: u64,
        part: Part<'_>,
    ) -> GgufError {
        match file_length {
            Some(file_length) if needed_end > file_length => GgufError::UnexpectedEndOfFile {
                offset,
                needed_bytes: needed_end,
                file_length,
                context: part.to_string(),
            },
            _ => GgufError::Truncated {
                needed_bytes: needed_end,
                available_bytes,
                context: part.to_string(),
            },
        }
    }

    /// Fails early when `length` bytes from here are beyond the file or beyond a slice input.
    fn check_room_for(&self, length: u64, part: Part<'_>) -> Result<(), GgufError> {
        let offset = self.source.position();
        let needed_end = offset.saturating_add(length);
        let past_file_end = self.file_length.is_some_and(|end| needed_end > end);
        let available = self.source.known_available_from_here();
        let past_input_end = available.is_some_and(|available| length > available);
        if past_file_end || past_input_end {
            let available_bytes = offset.saturating_add(available.unwrap_or(0));
            return Err(Self::end_of_input_error(
                self.file_length,
                offset,
                needed_end,
                available_bytes,
                part,
            ));
        }
        Ok(())
    }

    fn read_bytes(&mut self, length: u64, part: Part<'_>) -> Result<&[u8], GgufError> {
        self.check_room_for(length, part)?;
        let offset = self.source.position();
        let file_length = self.file_length;
        let Ok(length_in_memory) = usize::try_from(length) else {
            return Err(GgufError::CountTooLarge {
                what: format!("byte length of {part}"),
                count: length,
                limit: usize::MAX as u64,
                offset,
            });
        };
        match self.source.read_bytes(length_in_memory) {
            Ok(bytes) => Ok(bytes),
            Err(ShortRead::EndOfInput { available_bytes }) => Err(Self::end_of_input_error(
                file_length,
                offset,
                offset.saturating_add(length),
                available_bytes,
                part,
            )),
            Err(ShortRead::Io(source)) => Err(GgufError::Io { offset, source }),
        }
    }

    fn read_array_of<const N: usize>(&mut self, part: Part<'_>) -> Result<[u8; N], GgufError> {
        let bytes = self.read_bytes(N as u64, part)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn read_u32(&mut self, part: Part<'_>) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.read_array_of(part)?))
    }

    fn read_u64(&mut self, part: Part<'_>) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.read_array_of(part)?))
    }

    /// Checks a declared element count before anything is allocated for it, and returns how
    /// many elements are safe to pre-allocate.
    fn check_count(
        &self,
        count: u64,
        min_bytes_per_element: u64,
        limit: u64,
        what: impl Fn() -> String,
        count_offset: u64,
        part: Part<'_>,
    ) -> Result<usize, GgufError> {
        if count > limit {
            return Err(GgufError::CountTooLarge {
                what: what(),
                count,
                limit,
                offset: count_offset,
            });
        }
        let position = self.source.position();
        if let Some(file_length) = self.file_length {
            let bytes_left_in_file = file_length.saturating_sub(position);
            let most_that_fit = bytes_left_in_file / min_bytes_per_element;
            if count > most_that_fit {
                return Err(GgufError::CountTooLarge {
                    what: format!(
                        "{} (the {bytes_left_in_file} bytes left in the file hold at most \
                         {most_that_fit})",
                        what()
                    ),
                    count,
                    limit: most_that_fit,
                    offset: count_offset,
                });
            }
        }
        // `count <= limit` keeps this product far from overflow.
        let minimum_bytes = count.saturating_mul(min_bytes_per_element);
        self.check_room_for(minimum_bytes, part)?;
        let preallocation = match self.source.known_available_from_here() {
            // The bytes are in memory, so the count is bounded by the input's size.
            Some(_) => count,
            None => count.min(STREAM_PREALLOCATION_LIMIT),
        };
        Ok(usize::try_from(preallocation).unwrap_or(0))
    }

    /// Reads a string's length and bytes, enforcing `limit` on the length.
    fn read_string_bytes(
        &mut self,
        limit: u64,
        part: Part<'_>,
        on_too_long: impl FnOnce(u64, u64) -> GgufError,
    ) -> Result<&[u8], GgufError> {
        let length_offset = self.source.position();
        let length = self.read_u64(part)?;
        if length > limit {
            return Err(on_too_long(length, length_offset));
        }
        self.read_bytes(length, part)
    }

    fn read_value_string(&mut self, part: Part<'_>) -> Result<String, GgufError> {
        let bytes = self.read_string_bytes(MAX_STRING_VALUE_LENGTH, part, |length, offset| {
            GgufError::StringTooLong {
                context: part.to_string(),
                offset,
                length,
                limit: MAX_STRING_VALUE_LENGTH,
            }
        })?;
        Ok(decode_value_text(bytes).into_owned())
    }

    pub(crate) fn parse(mut self) -> Result<GgufFile, GgufError> {
        let magic = self.read_array_of::<4>(Part::Magic)?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = self.read_u32(Part::Header)?;
        check_version(version)?;

        let tensor_count_offset = self.source.position();
        let tensor_count = self.read_u64(Part::Header)?;
        let metadata_count_offset = self.source.position();
        let metadata_count = self.read_u64(Part::Header)?;
        self.check_count(
            tensor_count,
            MIN_TENSOR_INFO_BYTES,
            MAX_TENSOR_COUNT,
            || "tensor count".to_owned(),
            tensor_count_offset,
            Part::Header,
        )?;
        let metadata_capacity = self.check_count(
            metadata_count,
            MIN_METADATA_ENTRY_BYTES,
            MAX_METADATA_COUNT,
            || "metadata count".to_owned(),
            metadata_count_offset,
            Part::Header,
        )?;

        let mut metadata = Vec::with_capacity(metadata_capacity);
        let mut metadata_index = HashMap::with_capacity(metadata_capacity);
        for index in 0..metadata_count {
            let entry = self.read_metadata_entry(index, &metadata_index)?;
            metadata_index.insert(entry.key.clone(), metadata.len());
            metadata.push(entry);
        }

        let alignment = match metadata_index.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(&entry_index) => match &metadata[entry_index].value {
                MetadataValue::U32(alignment) => u64::from(*alignment),
                other => {
                    return Err(GgufError::TypeMismatch {
                        key: ALIGNMENT_KEY.to_owned(),
                        expected: "u32",
                        actual: other.type_description(),
                    })
                }
            },
        };
        if !alignment.is_power_of_two() {
            return Err(GgufError::InvalidAlignment { alignment });
        }

        // The count was checked against the bytes after the header; check it again against
        // the bytes after the metadata, which is where the tensor infos actually are.
        let tensor_capacity = self.check_count(
            tensor_count,
            MIN_TENSOR_INFO_BYTES,
            MAX_TENSOR_COUNT,
            || "tensor count".to_owned(),
            tensor_count_offset,
            Part::TensorInfo { index: 0 },
        )?;
        let mut tensors = Vec::with_capacity(tensor_capacity);
        let mut tensor_index = HashMap::with_capacity(tensor_capacity);
        for index in 0..tensor_count {
            let tensor = self.read_tensor_info(index, &tensor_index)?;
            tensor_index.insert(tensor.name.clone(), tensors.len());
            tensors.push(tensor);
        }

        let tensor_infos_end = self.source.position();
        let (data_offset, data_section_length) =
            check_tensor_layout(&tensors, tensor_infos_end, alignment, self.file_length)?;

        Ok(GgufFile {
            version,
            alignment,
            metadata,
            metadata_index,
            tensors,
            tensor_index,
            tensor_infos_end,
            data_offset,
            data_section_length,
            file_length: self.file_length,
        })
    }

    fn read_tensor_info(
        &mut self,
        index: u64,
        names_so_far: &HashMap<String, usize>,
    ) -> Result<TensorInfo, GgufError> {
        let part = Part::TensorInfo { index };
        let name_offset = self.source.position();
        let name_bytes =
            self.read_string_bytes(MAX_TENSOR_NAME_LENGTH, part, |length, offset| {
                GgufError::TensorNameTooLong {
                    offset,
                    length,
                    limit: MAX_TENSOR_NAME_LENGTH,
                }
            })?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| GgufError::InvalidUtf8 {
                context: format!("name of {part}"),
                offset: name_offset,
            })?
            .to_owned();
        if names_so_far.contains_key(&name) {
            return Err(GgufError::DuplicateTensorName {
                name,
                offset: name_offset,
            });
        }
        let part = Part::TensorField { name: &name };

        let n_dims = self.read_u32(part)?;
        if n_dims > GGML_MAX_DIMS {
            return Err(GgufError::TooManyDimensions {
                tensor: name,
                n_dims,
                limit: GGML_MAX_DIMS,
            });
        }
        let mut dimensions = Vec::with_capacity(n_dims as usize);
        for dimension_index in 0..n_dims as usize {
            let value = self.read_u64(part)?;
            // ggml stores dimensions as int64_t.
            if i64::try_from(value).is_err() {
                return Err(GgufError::DimensionTooLarge {
                    tensor: name,
                    dimension_index,
                    value,
                });
            }
            dimensions.push(value);
        }
        let element_count = if dimensions.contains(&0) {
            0
        } else {
            dimensions
                .iter()
                .try_fold(1u64, |product, dimension| product.checked_mul(*dimension))
                .filter(|product| i64::try_from(*product).is_ok())
                .ok_or_else(|| GgufError::ElementCountOverflow {
                    tensor: name.clone(),
                    dimensions: dimensions.clone(),
                })?
        };

        let type_id = self.read_u32(part)?;
        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownTensorType {
                tensor: name,
                type_id,
            });
        };
        // A tensor with no dimensions is a scalar: one row of one element, as in ggml.
        let row_length = dimensions.first().copied().unwrap_or(1);
        if row_length % ggml_type.block_size() != 0 {
            return Err(GgufError::RowNotMultipleOfBlock {
                tensor: name,
                ggml_type,
                row_length,
                block_size: ggml_type.block_size(),
            });
        }
        let Some(byte_size) = ggml_type.byte_size_of(element_count) else {
            return Err(GgufError::TensorSizeOverflow { tensor: name });
        };
        let offset = self.read_u64(part)?;
        Ok(TensorInfo {
            name,
            dimensions,
            ggml_type,
            offset,
            element_count,
            byte_size,
        })
    }
}

fn check_version(version: u32) -> Result<(), GgufError> {
    const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u32> = 2..=3;
    // A big-endian file's small version number reads as 0x0?000000 on a little-endian host.
    const LOW_HALF_MASK: u32 = 0x0000_FFFF;
    if SUPPORTED_VERSIONS.contains(&version) {
        return Ok(());
    }
    let looks_byte_swapped =
        version & LOW_HALF_MASK == 0 && (1..=3).contains(&version.swap_bytes());
    if looks_byte_swapped {
        return Err(GgufError::BigEndianFile { version });
    }
    Err(GgufError::UnsupportedVersion { version })
}

/// Checks where tensor data lies: each offset aligned, in llama.cpp's packed order, and inside
/// the file when its length is known. Returns the data section's offset and padded length.
fn check_tensor_layout(
    tensors: &[TensorInfo],
    tensor_infos_end: u64,
    alignment: u64,
    file_length: Option<u64>,
) -> Result<(u64, u64), GgufError> {
    let overflow = |tensor: &TensorInfo| GgufError::DataSectionOverflow {
        tensor: tensor.name.clone(),
    };
    // Like llama.cpp, pad to the data section only when there is tensor data to align.
    let data_offset = match tensors.first() {
        None => tensor_infos_end,
        Some(first) => align_up(tensor_infos_end, alignment).ok_or_else(|| overflow(first))?,
    };
    let mut expected_offset = 0u64;
    for tensor in tensors {
        if tensor.offset % alignment != 0 {
            return Err(GgufError::UnalignedTensorOffset {
                tensor: tensor.name.clone(),
                offset: tensor.offset,
                alignment,
            });
        }
        if tensor.offset != expected_offset {
            return Err(GgufError::TensorOffsetMismatch {
                tensor: tensor.name.clone(),
                offset: tensor.offset,
                expected: expected_offset,
            });
        }
        let data_start = data_offset
            .checked_add(tensor.offset)
            .ok_or_else(|| overflow(tensor))?;
        let data_end = data_start
            .checked_add(tensor.byte_size)
            .ok_or_else(|| overflow(tensor))?;
        if let Some(file_length) = file_length {
            if data_end > file_length {
                return Err(GgufError::TensorDataOutOfBounds {
                    tensor: tensor.name.clone(),
                    data_start,
                    data_end,
                    file_length,
                });
            }
        }
        let padded_size = align_up(tensor.byte_size, alignment).ok_or_else(|| overflow(tensor))?;
        expected_offset = expected_offset
            .checked_add(padded_size)
            .ok_or_else(|| overflow(tensor))?;
    }
    Ok((data_offset, expected_offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_to_power_of_two_multiples() {
        assert_eq!(align_up(0, 32), Some(0));
        assert_eq!(align_up(1, 32), Some(32));
        assert_eq!(align_up(64, 32), Some(64));
        assert_eq!(align_up(u64::MAX - 3, 32), None);
    }

    #[test]
    fn versions() {
        assert!(check_version(2).is_ok());
        assert!(check_version(3).is_ok());
        for version in [0, 1, 4, 0x0001_0000, u32::MAX] {
            assert!(matches!(
                check_version(version),
                Err(GgufError::UnsupportedVersion { .. })
            ));
        }
        assert!(matches!(
            check_version(0x0300_0000),
            Err(GgufError::BigEndianFile { .. })
        ));
    }
}
