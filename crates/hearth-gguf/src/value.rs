//! Metadata values: the thirteen GGUF value types, typed arrays, and a packed string array.

use std::fmt;

/// The type tag stored before every metadata value (`enum gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetadataValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl MetadataValueType {
    /// The type with GGUF tag `type_tag`, or `None` for an unknown tag.
    pub fn from_tag(type_tag: u32) -> Option<MetadataValueType> {
        Some(match type_tag {
            0 => MetadataValueType::U8,
            1 => MetadataValueType::I8,
            2 => MetadataValueType::U16,
            3 => MetadataValueType::I16,
            4 => MetadataValueType::U32,
            5 => MetadataValueType::I32,
            6 => MetadataValueType::F32,
            7 => MetadataValueType::Bool,
            8 => MetadataValueType::String,
            9 => MetadataValueType::Array,
            10 => MetadataValueType::U64,
            11 => MetadataValueType::I64,
            12 => MetadataValueType::F64,
            _ => return None,
        })
    }

    /// The GGUF tag of this type.
    pub fn tag(self) -> u32 {
        match self {
            MetadataValueType::U8 => 0,
            MetadataValueType::I8 => 1,
            MetadataValueType::U16 => 2,
            MetadataValueType::I16 => 3,
            MetadataValueType::U32 => 4,
            MetadataValueType::I32 => 5,
            MetadataValueType::F32 => 6,
            MetadataValueType::Bool => 7,
            MetadataValueType::String => 8,
            MetadataValueType::Array => 9,
            MetadataValueType::U64 => 10,
            MetadataValueType::I64 => 11,
            MetadataValueType::F64 => 12,
        }
    }

    /// The short name used in error messages (`u32`, `string`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MetadataValueType::U8 => "u8",
            MetadataValueType::I8 => "i8",
            MetadataValueType::U16 => "u16",
            MetadataValueType::I16 => "i16",
            MetadataValueType::U32 => "u32",
            MetadataValueType::I32 => "i32",
            MetadataValueType::F32 => "f32",
            MetadataValueType::Bool => "bool",
            MetadataValueType::String => "string",
            MetadataValueType::Array => "array",
            MetadataValueType::U64 => "u64",
            MetadataValueType::I64 => "i64",
            MetadataValueType::F64 => "f64",
        }
    }

    /// Bytes one value of this type takes in the file, or `None` for the variable-size string
    /// and array types.
    pub fn fixed_byte_size(self) -> Option<u64> {
        match self {
            MetadataValueType::U8 | MetadataValueType::I8 | MetadataValueType::Bool => Some(1),
            MetadataValueType::U16 | MetadataValueType::I16 => Some(2),
            MetadataValueType::U32 | MetadataValueType::I32 | MetadataValueType::F32 => Some(4),
            MetadataValueType::U64 | MetadataValueType::I64 | MetadataValueType::F64 => Some(8),
            MetadataValueType::String | MetadataValueType::Array => None,
        }
    }
}

impl fmt::Display for MetadataValueType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(MetadataArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetadataValue {
    /// The value's type tag.
    pub fn value_type(&self) -> MetadataValueType {
        match self {
            MetadataValue::U8(_) => MetadataValueType::U8,
            MetadataValue::I8(_) => MetadataValueType::I8,
            MetadataValue::U16(_) => MetadataValueType::U16,
            MetadataValue::I16(_) => MetadataValueType::I16,
            MetadataValue::U32(_) => MetadataValueType::U32,
            MetadataValue::I32(_) => MetadataValueType::I32,
            MetadataValue::F32(_) => MetadataValueType::F32,
            MetadataValue::Bool(_) => MetadataValueType::Bool,
            MetadataValue::String(_) => MetadataValueType::String,
            MetadataValue::Array(_) => MetadataValueType::Array,
            MetadataValue::U64(_) => MetadataValueType::U64,
            MetadataValue::I64(_) => MetadataValueType::I64,
            MetadataValue::F64(_) => MetadataValueType::F64,
        }
    }

    /// A description of the type for error messages: `u32`, or `array of string`.
    pub fn type_description(&self) -> String {
        match self {
            MetadataValue::Array(array) => array.type_description(),
            scalar => scalar.value_type().name().to_owned(),
        }
    }

    /// The value as an unsigned integer, if it is an integer of any width that is not negative.
    ///
    /// Writers disagree on integer widths (most use u32, some i32 or u64), so readers accept
    /// any integer type rather than one exact tag.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetadataValue::U8(value) => Some(u64::from(value)),
            MetadataValue::U16(value) => Some(u64::from(value)),
            MetadataValue::U32(value) => Some(u64::from(value)),
            MetadataValue::U64(value) => Some(value),
            MetadataValue::I8(value) => u64::try_from(value).ok(),
            MetadataValue::I16(value) => u64::try_from(value).ok(),
            MetadataValue::I32(value) => u64::try_from(value).ok(),
            MetadataValue::I64(value) => u64::try_from(value).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetadataValue::U8(value) => Some(i64::from(value)),
            MetadataValue::U16(value) => Some(i64::from(value)),
            MetadataValue::U32(value) => Some(i64::from(value)),
            MetadataValue::U64(value) => i64::try_from(value).ok(),
            MetadataValue::I8(value) => Some(i64::from(value)),
            MetadataValue::I16(value) => Some(i64::from(value)),
            MetadataValue::I32(value) => Some(i64::from(value)),
            MetadataValue::I64(value) => Some(value),
            _ => None,
        }
    }

    /// The value as a float, if it is an f32 or f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetadataValue::F32(value) => Some(f64::from(value)),
            MetadataValue::F64(value) => Some(value),
            _ => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetadataValue::Bool(value) => Some(value),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(value) => Some(value),
            _ => None,
        }
    }

    /// The value as an array, if it is one.
    pub fn as_array(&self) -> Option<&MetadataArray> {
        match self {
            MetadataValue::Array(array) => Some(array),
            _ => None,
        }
    }
}

/// A metadata array. Elements are stored by type, so a 262,144-entry token score list is one
/// `Vec<f32>` rather than a quarter million boxed values.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(StringArray),
    /// An array of arrays; each inner array carries its own element type.
    Array(Vec<MetadataArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl MetadataArray {
    /// The element type.
    pub fn element_type(&self) -> MetadataValueType {
        match self {
            MetadataArray::U8(_) => MetadataValueType::U8,
            MetadataArray::I8(_) => MetadataValueType::I8,
            MetadataArray::U16(_) => MetadataValueType::U16,
            MetadataArray::I16(_) => MetadataValueType::I16,
            MetadataArray::U32(_) => MetadataValueType::U32,
            MetadataArray::I32(_) => MetadataValueType::I32,
            MetadataArray::F32(_) => MetadataValueType::F32,
            MetadataArray::Bool(_) => MetadataValueType::Bool,
            MetadataArray::String(_) => MetadataValueType::String,
            MetadataArray::Array(_) => MetadataValueType::Array,
            MetadataArray::U64(_) => MetadataValueType::U64,
            MetadataArray::I64(_) => MetadataValueType::I64,
            MetadataArray::F64(_) => MetadataValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MetadataArray::U8(values) => values.len(),
            MetadataArray::I8(values) => values.len(),
            MetadataArray::U16(values) => values.len(),
            MetadataArray::I16(values) => values.len(),
            MetadataArray::U32(values) => values.len(),
            MetadataArray::I32(values) => values.len(),
            MetadataArray::F32(values) => values.len(),
            MetadataArray::Bool(values) => values.len(),
            MetadataArray::String(values) => values.len(),
            MetadataArray::Array(values) => values.len(),
            MetadataArray::U64(values) => values.len(),
            MetadataArray::I64(values) => values.len(),
            MetadataArray::F64(values) => values.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A description for error messages: `array of u32`.
    pub fn type_description(&self) -> String {
        format!("array of {}", self.element_type().name())
    }

    /// The elements as unsigned integers, if the element type is an integer type and no
    /// element is negative. Used for per-layer values such as `head_count_kv`.
    pub fn to_u64_vec(&self) -> Option<Vec<u64>> {
        fn convert<T: Copy>(values: &[T], to_u64: impl Fn(T) -> Option<u64>) -> Option<Vec<u64>> {
            values.iter().map(|value| to_u64(*value)).collect()
        }
        match self {
            MetadataArray::U8(values) => convert(values, |value| Some(u64::from(value))),
            MetadataArray::U16(values) => convert(values, |value| Some(u64::from(value))),
            MetadataArray::U32(values) => convert(values, |value| Some(u64::from(value))),
            MetadataArray::U64(values) => Some(values.clone()),
            MetadataArray::I8(values) => convert(values, |value| u64::try_from(value).ok()),
            MetadataArray::I16(values) => convert(values, |value| u64::try_from(value).ok()),
            MetadataArray::I32(values) => convert(values, |value| u64::try_from(value).ok()),
            MetadataArray::I64(values) => convert(values, |value| u64::try_from(value).ok()),
            _ => None,
        }
    }

    /// The string elements, if this is an array of strings.
    pub fn as_strings(&self) -> Option<&StringArray> {
        match self {
            MetadataArray::String(strings) => Some(strings),
            _ => None,
        }
    }
}

/// An array of strings packed into one buffer: a tokenizer's 150,000-entry vocabulary costs two
/// allocations instead of one per token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StringArray {
    /// All strings, concatenated.
    text: String,
    /// End offset in `text` of each string; string `i` spans `ends[i-1]..ends[i]`.
    ends: Vec<usize>,
}

impl StringArray {
    /// An empty array.
    pub fn new() -> StringArray {
        StringArray::default()
    }

    /// An empty array with room for `string_count` strings of `text_bytes` bytes in total.
    pub fn with_capacity(string_count: usize, text_bytes: usize) -> StringArray {
        StringArray {
            text: String::with_capacity(text_bytes),
            ends: Vec::with_capacity(string_count),
        }
    }

    /// Appends one string.
    pub fn push(&mut self, value: &str) {
        self.text.push_str(value);
        self.ends.push(self.text.len());
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no strings.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)?;
        let start = match index {
            0 => 0,
            _ => *self.ends.get(index - 1)?,
        };
        self.text.get(start..end)
    }

    /// The strings in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|index| self.get(index).unwrap_or_default())
    }

    /// Total bytes of text.
    pub fn text_byte_length(&self) -> usize {
        self.text.len()
    }
}

impl fmt::Debug for StringArray {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A vocabulary printed in full would swamp any log; show the size and a few entries.
        const SHOWN_STRINGS: usize = 8;
        let mut list = formatter.debug_list();
        list.entries(self.iter().take(SHOWN_STRINGS));
        if self.len() > SHOWN_STRINGS {
            list.entry(&format_args!("... {} strings in all", self.len()));
        }
        list.finish()
    }
}

impl<'a> FromIterator<&'a str> for StringArray {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> StringArray {
        let mut array = StringArray::new();
        for value in iter {
            array.push(value);
        }
        array
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_array_round_trips_including_empty_strings() {
        let array: StringArray = ["<s>", "", "héllo", "x"].into_iter().collect();
        assert_eq!(array.len(), 4);
        assert_eq!(array.get(0), Some("<s>"));
        assert_eq!(array.get(1), Some(""));
        assert_eq!(array.get(2), Some("héllo"));
        assert_eq!(array.get(4), None);
        assert_eq!(array.iter().collect::<Vec<_>>(), ["<s>", "", "héllo", "x"]);
    }

    #[test]
    fn integers_convert_across_widths_but_not_signs() {
        assert_eq!(MetadataValue::I32(7).as_u64(), Some(7));
        assert_eq!(MetadataValue::I32(-1).as_u64(), None);
        assert_eq!(MetadataValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(MetadataValue::F32(1.0).as_u64(), None);
        assert_eq!(
            MetadataArray::I32(vec![1, 2]).to_u64_vec(),
            Some(vec![1, 2])
        );
        assert_eq!(MetadataArray::I32(vec![1, -2]).to_u64_vec(), None);
    }

    #[test]
    fn every_tag_round_trips() {
        for tag in 0..=12 {
            let value_type = MetadataValueType::from_tag(tag).expect("known tag");
            assert_eq!(value_type.tag(), tag);
        }
        assert_eq!(MetadataValueType::from_tag(13), None);
    }
}
