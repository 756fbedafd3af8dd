//! A small GGUF writer for tests, fuzz seeds and tools.
//!
//! It writes exactly what it is told, including files no reader should accept: any magic,
//! version, declared counts, raw type tags, tensor offsets or dimension lists. Tensor data is a
//! deterministic byte pattern; nobody runs these weights.

use crate::limits::{DEFAULT_ALIGNMENT, GGUF_MAGIC};
use crate::parser::ALIGNMENT_KEY;
use crate::value::{MetadataArray, MetadataValue};
use crate::GgmlType;

/// A tensor written field by field, with nothing checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTensor {
    pub name: String,
    /// The `n_dims` field; normally `dimensions.len()`.
    pub n_dims: u32,
    pub dimensions: Vec<u64>,
    /// The ggml type id (see [`GgmlType::id`]).
    pub type_id: u32,
    /// The offset field; `None` places the tensor after the previous one, aligned.
    pub offset: Option<u64>,
    /// Bytes written to the data section for this tensor.
    pub data: Vec<u8>,
}

/// Builds a GGUF file in memory. For tests and tools: it writes whatever it is given.
///
/// ```
/// use hearth_gguf::{GgmlType, GgufBuilder, GgufFile, MetadataValue};
///
/// let bytes = GgufBuilder::new()
///     .metadata("general.architecture", MetadataValue::String("llama".into()))
///     .tensor("token_embd.weight", GgmlType::F32, &[8, 2])
///     .build();
/// let file = GgufFile::parse(&bytes).unwrap();
/// assert_eq!(file.architecture().unwrap(), "llama");
/// assert_eq!(file.total_tensor_bytes(), 64);
/// ```
#[derive(Debug, Clone)]
pub struct GgufBuilder {
    magic: [u8; 4],
    version: u32,
    /// Alignment used to lay out tensor data (not written unless set with `alignment`).
    layout_alignment: u64,
    declared_tensor_count: Option<u64>,
    declared_metadata_count: Option<u64>,
    /// Key, type tag, encoded value.
    metadata: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<RawTensor>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        GgufBuilder::new()
    }
}

impl GgufBuilder {
    /// An empty version-3 file.
    pub fn new() -> GgufBuilder {
        GgufBuilder {
            magic: GGUF_MAGIC,
            version: 3,
            layout_alignment: DEFAULT_ALIGNMENT,
            declared_tensor_count: None,
            declared_metadata_count: None,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Writes `magic` instead of `GGUF`.
    pub fn magic(mut self, magic: [u8; 4]) -> Self {
        self.magic = magic;
        self
    }

    /// Writes `version` in the header.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Writes `general.alignment = alignment` (as u32) and lays tensor data out with it; a
    /// zero or non-power-of-two alignment is written as given, and data is then laid out with
    /// the default alignment.
    pub fn alignment(mut self, alignment: u32) -> Self {
        if alignment.is_power_of_two() {
            self.layout_alignment = u64::from(alignment);
        }
        self.metadata(ALIGNMENT_KEY, MetadataValue::U32(alignment))
    }

    /// Writes `count` as the tensor count instead of the number of tensors added.
    pub fn declared_tensor_count(mut self, count: u64) -> Self {
        self.declared_tensor_count = Some(count);
        self
    }

    /// Writes `count` as the metadata count instead of the number of entries added.
    pub fn declared_metadata_count(mut self, count: u64) -> Self {
        self.declared_metadata_count = Some(count);
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: &str, value: MetadataValue) -> Self {
        let mut encoded = Vec::new();
        encode_value_payload(&value, &mut encoded);
        self.metadata
            .push((key.to_owned(), value.value_type().tag(), encoded));
        self
    }

    /// Adds a metadata entry with type tag `type_tag` followed by `payload`, verbatim.
    pub fn raw_metadata(mut self, key: &str, type_tag: u32, payload: Vec<u8>) -> Self {
        self.metadata.push((key.to_owned(), type_tag, payload));
        self
    }

    /// Adds a tensor with pattern data of the right size (no data when the size is not
    /// computable, e.g. a row that is not whole blocks).
    pub fn tensor(self, name: &str, ggml_type: GgmlType, dimensions: &[u64]) -> Self {
        let element_count = dimensions
            .iter()
            .try_fold(1u64, |product, dimension| product.checked_mul(*dimension));
        let byte_size = element_count
            .and_then(|count| ggml_type.byte_size_of(count))
            .unwrap_or(0);
        let data = (0..byte_size).map(|index| (index % 251) as u8).collect();
        self.raw_tensor(RawTensor {
            name: name.to_owned(),
            n_dims: dimensions.len() as u32,
            dimensions: dimensions.to_vec(),
            type_id: ggml_type.id(),
            offset: None,
            data,
        })
    }

    /// Adds a tensor written field by field.
    pub fn raw_tensor(mut self, tensor: RawTensor) -> Self {
        self.tensors.push(tensor);
        self
    }

    /// The file's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&self.magic);
        bytes.extend_from_slice(&self.version.to_le_bytes());
        let tensor_count = self
            .declared_tensor_count
            .unwrap_or(self.tensors.len() as u64);
        let metadata_count = self
            .declared_metadata_count
            .unwrap_or(self.metadata.len() as u64);
        bytes.extend_from_slice(&tensor_count.to_le_bytes());
        bytes.extend_from_slice(&metadata_count.to_le_bytes());

        for (key, type_tag, payload) in &self.metadata {
            encode_string(key.as_bytes(), &mut bytes);
            bytes.extend_from_slice(&type_tag.to_le_bytes());
            bytes.extend_from_slice(payload);
        }

        let alignment = self.layout_alignment;
        let mut next_offset = 0u64;
        let mut data_offsets = Vec::with_capacity(self.tensors.len());
        for tensor in &self.tensors {
            encode_string(tensor.name.as_bytes(), &mut bytes);
            bytes.extend_from_slice(&tensor.n_dims.to_le_bytes());
            for dimension in &tensor.dimensions {
                bytes.extend_from_slice(&dimension.to_le_bytes());
            }
            bytes.extend_from_slice(&tensor.type_id.to_le_bytes());
            bytes.extend_from_slice(&tensor.offset.unwrap_or(next_offset).to_le_bytes());
            data_offsets.push(next_offset);
            next_offset = pad_to(next_offset + tensor.data.len() as u64, alignment);
        }

        if !self.tensors.is_empty() {
            let data_start = pad_to(bytes.len() as u64, alignment);
            bytes.resize(data_start as usize, 0);
            for (tensor, offset) in self.tensors.iter().zip(data_offsets) {
                bytes.resize((data_start + offset) as usize, 0);
                bytes.extend_from_slice(&tensor.data);
            }
            bytes.resize((data_start + next_offset) as usize, 0);
        }
        bytes
    }
}

fn pad_to(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment) * alignment
}

fn encode_string(text: &[u8], bytes: &mut Vec<u8>) {
    bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
    bytes.extend_from_slice(text);
}

/// Encodes a value without its type tag.
fn encode_value_payload(value: &MetadataValue, bytes: &mut Vec<u8>) {
    match value {
        MetadataValue::U8(number) => bytes.push(*number),
        MetadataValue::I8(number) => bytes.extend_from_slice(&number.to_le_bytes()),
        MetadataValue::U16(number) => bytes.extend_from_slice(&number.to_le_bytes()),
        MetadataValue::I16(number) => bytes.extend_from_slice(&number.to_le_bytes()),
        MetadataValue::U32(number) => bytes.extend_from_slice(&number.to_le_bytes()),
        MetadataValue::I32(number) => bytes.extend_from_slice(&number.to_le_bytes()),
        MetadataValue::F32(number) => bytes.extend_from_slice(&number.to_le_bytes()),
        MetadataValue::Bool(flag) => bytes.push(u8::from(*flag)),
        MetadataValue::String(text) => encode_string(text.as_bytes(), bytes),
        MetadataValue::Array(array) => encode_array(array, bytes),
        MetadataValue::U64(number) => bytes.extend_from_slice(&number.to_le_bytes()),
        MetadataValue::I64(number) => bytes.extend_from_slice(&number.to_le_bytes()),
        MetadataValue::F64(number) => bytes.extend_from_slice(&number.to_le_bytes()),
    }
}

/// Encodes an array: element type tag, length, elements.
fn encode_array(array: &MetadataArray, bytes: &mut Vec<u8>) {
    bytes.extend_from_slice(&array.element_type().tag().to_le_bytes());
    bytes.extend_from_slice(&(array.len() as u64).to_le_bytes());
    macro_rules! numbers {
        ($values:expr) => {
            for number in $values {
                bytes.extend_from_slice(&number.to_le_bytes());
            }
        };
    }
    match array {
        MetadataArray::U8(values) => bytes.extend_from_slice(values),
        MetadataArray::I8(values) => numbers!(values),
        MetadataArray::U16(values) => numbers!(values),
        MetadataArray::I16(values) => numbers!(values),
        MetadataArray::U32(values) => numbers!(values),
        MetadataArray::I32(values) => numbers!(values),
        MetadataArray::F32(values) => numbers!(values),
        MetadataArray::Bool(values) => bytes.extend(values.iter().map(|flag| u8::from(*flag))),
        MetadataArray::String(values) => {
            for text in values.iter() {
                encode_string(text.as_bytes(), bytes);
            }
        }
        MetadataArray::Array(arrays) => {
            for inner in arrays {
                encode_array(inner, bytes);
            }
        }
        MetadataArray::U64(values) => numbers!(values),
        MetadataArray::I64(values) => numbers!(values),
        MetadataArray::F64(values) => numbers!(values),
    }
}
