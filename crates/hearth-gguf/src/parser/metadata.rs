//! The metadata entries of a GGUF header: a key, a type tag and a value (a number, a bool, a
//! string, or an array of them, nested to a bounded depth), every length and count checked
//! before anything is allocated.

use std::collections::HashMap;

use super::{Parser, Part, MIN_NESTED_ARRAY_BYTES, STRING_LENGTH_BYTES};
use crate::file::MetadataEntry;
use crate::limits::{
    MAX_ARRAY_LENGTH, MAX_ARRAY_NESTING_DEPTH, MAX_KEY_LENGTH, MAX_STRING_VALUE_LENGTH,
};
use crate::source::ByteSource;
use crate::value::{MetadataArray, MetadataValue, MetadataValueType, StringArray};
use crate::GgufError;

impl<S: ByteSource> Parser<S> {
    pub(super) fn read_metadata_entry(
        &mut self,
        index: u64,
        keys_so_far: &HashMap<String, usize>,
    ) -> Result<MetadataEntry, GgufError> {
        let part = Part::MetadataKey { index };
        let key_offset = self.source.position();
        let key_bytes = self.read_string_bytes(MAX_KEY_LENGTH, part, |length, offset| {
            GgufError::StringTooLong {
                context: part.to_string(),
                offset,
                length,
                limit: MAX_KEY_LENGTH,
            }
        })?;
        if key_bytes.is_empty() {
            return Err(GgufError::EmptyKey {
                index,
                offset: key_offset,
            });
        }
        // Keys are looked up by name, so unlike values they must be exact text.
        let key = std::str::from_utf8(key_bytes)
            .map_err(|_| GgufError::InvalidUtf8 {
                context: part.to_string(),
                offset: key_offset,
            })?
            .to_owned();
        if keys_so_far.contains_key(&key) {
            return Err(GgufError::DuplicateKey {
                key,
                offset: key_offset,
            });
        }
        let type_offset = self.source.position();
        let type_tag = self.read_u32(Part::MetadataValue { key: &key })?;
        let value = self.read_value(&key, type_tag, type_offset)?;
        Ok(MetadataEntry { key, value })
    }

    fn read_value(
        &mut self,
        key: &str,
        type_tag: u32,
        type_offset: u64,
    ) -> Result<MetadataValue, GgufError> {
        let part = Part::MetadataValue { key };
        let value_type =
            MetadataValueType::from_tag(type_tag).ok_or_else(|| GgufError::UnknownValueType {
                key: key.to_owned(),
                type_tag,
                offset: type_offset,
            })?;
        let value_offset = self.source.position();
        Ok(match value_type {
            MetadataValueType::U8 => {
                MetadataValue::U8(u8::from_le_bytes(self.read_array_of(part)?))
            }
            MetadataValueType::I8 => {
                MetadataValue::I8(i8::from_le_bytes(self.read_array_of(part)?))
            }
            MetadataValueType::U16 => {
                MetadataValue::U16(u16::from_le_bytes(self.read_array_of(part)?))
            }
            MetadataValueType::I16 => {
                MetadataValue::I16(i16::from_le_bytes(self.read_array_of(part)?))
            }
            MetadataValueType::U32 => MetadataValue::U32(self.read_u32(part)?),
            MetadataValueType::I32 => {
                MetadataValue::I32(i32::from_le_bytes(self.read_array_of(part)?))
            }
            MetadataValueType::F32 => {
                MetadataValue::F32(f32::from_le_bytes(self.read_array_of(part)?))
            }
            MetadataValueType::Bool => {
                let [byte] = self.read_array_of(part)?;
                MetadataValue::Bool(decode_bool(byte, key, value_offset)?)
            }
            MetadataValueType::String => MetadataValue::String(self.read_value_string(part)?),
            MetadataValueType::Array => MetadataValue::Array(self.read_array(key, 1)?),
            MetadataValueType::U64 => MetadataValue::U64(self.read_u64(part)?),
            MetadataValueType::I64 => {
                MetadataValue::I64(i64::from_le_bytes(self.read_array_of(part)?))
            }
            MetadataValueType::F64 => {
                MetadataValue::F64(f64::from_le_bytes(self.read_array_of(part)?))
            }
        })
    }

    /// Reads an array header and its elements; `depth` is 1 for a top-level array.
    fn read_array(&mut self, key: &str, depth: u32) -> Result<MetadataArray, GgufError> {
        let part = Part::MetadataValue { key };
        let element_type_offset = self.source.position();
        let element_type_tag = self.read_u32(part)?;
        let element_type = MetadataValueType::from_tag(element_type_tag).ok_or_else(|| {
            GgufError::UnknownArrayElementType {
                key: key.to_owned(),
                type_tag: element_type_tag,
                offset: element_type_offset,
            }
        })?;
        let length_offset = self.source.position();
        let length = self.read_u64(part)?;
        let min_element_bytes = match element_type {
            MetadataValueType::String => STRING_LENGTH_BYTES,
            MetadataValueType::Array => {
                if depth >= MAX_ARRAY_NESTING_DEPTH {
                    return Err(GgufError::ArrayNestingTooDeep {
                        key: key.to_owned(),
                        offset: element_type_offset,
                        limit: MAX_ARRAY_NESTING_DEPTH,
                    });
                }
                MIN_NESTED_ARRAY_BYTES
            }
            fixed => fixed.fixed_byte_size().unwrap_or(1),
        };
        let capacity = self.check_count(
            length,
            min_element_bytes,
            MAX_ARRAY_LENGTH,
            || format!("array length of metadata key '{key}'"),
            length_offset,
            part,
        )?;

        match element_type {
            MetadataValueType::String => {
                let mut strings = StringArray::with_capacity(capacity, 0);
                for _ in 0..length {
                    let bytes =
                        self.read_string_bytes(MAX_STRING_VALUE_LENGTH, part, |length, offset| {
                            GgufError::StringTooLong {
                                context: format!("string element of metadata key '{key}'"),
                                offset,
                                length,
                                limit: MAX_STRING_VALUE_LENGTH,
                            }
                        })?;
                    strings.push(&decode_value_text(bytes));
                }
                Ok(MetadataArray::String(strings))
            }
            MetadataValueType::Array => {
                let mut arrays = Vec::with_capacity(capacity);
                for _ in 0..length {
                    arrays.push(self.read_array(key, depth + 1)?);
                }
                Ok(MetadataArray::Array(arrays))
            }
            MetadataValueType::Bool => {
                let values_offset = self.source.position();
                let bytes = self.read_bytes(length, part)?;
                let mut values = Vec::with_capacity(bytes.len());
                for (position, byte) in bytes.iter().enumerate() {
                    values.push(decode_bool(*byte, key, values_offset + position as u64)?);
                }
                Ok(MetadataArray::Bool(values))
            }
            MetadataValueType::U8 => Ok(MetadataArray::U8(self.read_bytes(length, part)?.to_vec())),
            MetadataValueType::I8 => self.read_fixed_array(length, part, MetadataArray::I8),
            MetadataValueType::U16 => self.read_fixed_array(length, part, MetadataArray::U16),
            MetadataValueType::I16 => self.read_fixed_array(length, part, MetadataArray::I16),
            MetadataValueType::U32 => self.read_fixed_array(length, part, MetadataArray::U32),
            MetadataValueType::I32 => self.read_fixed_array(length, part, MetadataArray::I32),
            MetadataValueType::F32 => self.read_fixed_array(length, part, MetadataArray::F32),
            MetadataValueType::U64 => self.read_fixed_array(length, part, MetadataArray::U64),
            MetadataValueType::I64 => self.read_fixed_array(length, part, MetadataArray::I64),
            MetadataValueType::F64 => self.read_fixed_array(length, part, MetadataArray::F64),
        }
    }

    /// Reads `length` fixed-size numbers in one bulk read.
    fn read_fixed_array<T: FromLittleEndian>(
        &mut self,
        length: u64,
        part: Part<'_>,
        wrap: fn(Vec<T>) -> MetadataArray,
    ) -> Result<MetadataArray, GgufError> {
        // `length` is at most MAX_ARRAY_LENGTH, so this cannot overflow.
        let byte_length = length.saturating_mul(T::BYTE_SIZE as u64);
        let bytes = self.read_bytes(byte_length, part)?;
        Ok(wrap(
            bytes
                .chunks_exact(T::BYTE_SIZE)
                .map(T::from_le_slice)
                .collect(),
        ))
    }
}

fn decode_bool(byte: u8, key: &str, offset: u64) -> Result<bool, GgufError> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(GgufError::InvalidBool {
            key: key.to_owned(),
            offset,
            value,
        }),
    }
}

/// Decodes a metadata string value. The spec says UTF-8, but llama.cpp accepts any bytes in
/// values (old vocabularies hold raw byte tokens), so invalid sequences become U+FFFD instead
/// of rejecting a model that loads fine.
pub(super) fn decode_value_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A fixed-size number read from little-endian bytes.
trait FromLittleEndian: Sized {
    const BYTE_SIZE: usize;
    /// `bytes` is exactly `BYTE_SIZE` long (from `chunks_exact`).
    fn from_le_slice(bytes: &[u8]) -> Self;
}

macro_rules! impl_from_little_endian {
    ($($number:ty),*) => {$(
        impl FromLittleEndian for $number {
            const BYTE_SIZE: usize = std::mem::size_of::<$number>();
            fn from_le_slice(bytes: &[u8]) -> Self {
                let mut array = [0u8; std::mem::size_of::<$number>()];
                array.copy_from_slice(bytes);
                <$number>::from_le_bytes(array)
            }
        }
    )*};
}

impl_from_little_endian!(i8, u16, i16, u32, i32, f32, u64, i64, f64);
