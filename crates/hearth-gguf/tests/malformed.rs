//! Crafted files, valid and malformed: each malformation gives its own typed error, every
//! prefix of a valid file is handled, and nothing panics.

mod common;

// A test crate's root looks for its modules beside it; these live in `malformed/`.
#[path = "malformed/accessors.rs"]
mod accessors;
#[path = "malformed/header.rs"]
mod header;
#[path = "malformed/tensors.rs"]
mod tensors;
#[path = "malformed/truncation.rs"]
mod truncation;

use std::io::Read;

use common::valid_builder;
use hearth_gguf::limits::{
    MAX_ARRAY_NESTING_DEPTH, MAX_METADATA_COUNT, MAX_STRING_VALUE_LENGTH, MAX_TENSOR_COUNT,
    MAX_TENSOR_NAME_LENGTH,
};
use hearth_gguf::{
    GgmlType, GgufBuilder, GgufError, GgufFile, MetadataArray, MetadataValue, MetadataValueType,
    PerLayerValue, RawTensor,
};

fn parse_error(bytes: &[u8]) -> GgufError {
    match GgufFile::parse(bytes) {
        Ok(_) => panic!("expected an error, the file parsed"),
        Err(error) => error,
    }
}

fn string_payload(text: &[u8]) -> Vec<u8> {
    let mut payload = (text.len() as u64).to_le_bytes().to_vec();
    payload.extend_from_slice(text);
    payload
}

fn raw_f32_tensor(name: &str, dimensions: Vec<u64>) -> RawTensor {
    RawTensor {
        name: name.to_owned(),
        n_dims: dimensions.len() as u32,
        dimensions,
        type_id: GgmlType::F32.id(),
        offset: None,
        data: vec![0; 32],
    }
}

#[test]
fn the_valid_file_parses_with_every_value() {
    let bytes = valid_builder().build();
    let file = GgufFile::parse(&bytes).expect("valid file");
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.metadata().len(), 20);
    assert_eq!(file.architecture().unwrap(), "llama");
    assert_eq!(file.model_name().unwrap(), Some("tiny test model"));
    assert_eq!(file.block_count().unwrap(), 2);
    assert_eq!(file.context_length().unwrap(), 4096);
    assert_eq!(file.embedding_length().unwrap(), 256);
    assert_eq!(
        file.feed_forward_length().unwrap(),
        Some(PerLayerValue::Uniform(512))
    );
    assert_eq!(file.head_count().unwrap(), Some(PerLayerValue::Uniform(4)));
    let head_count_kv = file.head_count_kv().unwrap().unwrap();
    assert_eq!(head_count_kv, PerLayerValue::PerLayer(vec![2, 1]));
    assert_eq!(head_count_kv.max(), 2);
    assert_eq!(head_count_kv.for_layer(1), Some(1));
    assert_eq!(file.key_length().unwrap(), Some(64));
    assert_eq!(file.value_length().unwrap(), Some(64));
    assert_eq!(file.sliding_window_attention().unwrap(), None);
    assert_eq!(file.expert_count().unwrap(), None);
    assert_eq!(file.file_type().unwrap(), Some(15));
    assert_eq!(hearth_gguf::file_type_name(15), Some("Q4_K_M"));
    assert_eq!(file.vocab_size().unwrap(), Some(4));
    assert!(file.chat_template().unwrap().unwrap().contains("messages"));
    assert_eq!(file.get_f64("llama.rope.freq_base").unwrap(), Some(10000.0));
    assert_eq!(file.get_u64("test.u8").unwrap(), Some(200));
    assert_eq!(file.get_i64("test.i8").unwrap(), Some(-100));
    assert_eq!(file.get_i64("test.i16").unwrap(), Some(-30000));
    assert_eq!(file.get_i64("test.i64").unwrap(), Some(-5));
    assert_eq!(file.get_f64("test.f64").unwrap(), Some(0.125));
    assert_eq!(file.get_bool("test.bool").unwrap(), Some(true));
    let tokens = file.get_array("tokenizer.ggml.tokens").unwrap().unwrap();
    let tokens = tokens.as_strings().unwrap();
    assert_eq!(
        tokens.iter().collect::<Vec<_>>(),
        ["<s>", "</s>", "héllo", ""]
    );
    let nested = file.get_array("test.nested").unwrap().unwrap();
    let MetadataArray::Array(inner) = nested else {
        panic!("nested array expected, got {nested:?}");
    };
    assert_eq!(inner.len(), 4);
    assert_eq!(inner[0], MetadataArray::I8(vec![-1, 2]));
    assert_eq!(
        inner[2],
        MetadataArray::Array(vec![MetadataArray::F64(vec![1.5])])
    );

    assert_eq!(file.tensors().len(), 3);
    let embedding = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embedding.ggml_type, GgmlType::Q8_0);
    assert_eq!(embedding.byte_size, 1024 / 32 * 34);
    let ffn = file.tensor("blk.0.ffn_up.weight").unwrap();
    assert_eq!(ffn.byte_size, 2 * 144);
    assert_eq!(file.parameter_count(), 1024 + 3 + 512);
    assert_eq!(file.total_tensor_bytes(), 1088 + 12 + 288);
    assert_eq!(file.data_offset() % 32, 0);
    assert_eq!(
        file.data_offset() + file.data_section_length(),
        bytes.len() as u64
    );
    let norm = file.tensor("blk.0.attn_norm.weight").unwrap();
    assert_eq!(file.tensor_data(&bytes, norm).unwrap().len(), 12);
}

#[test]
fn every_value_type_round_trips_through_the_builder() {
    let values = [
        MetadataValue::U8(1),
        MetadataValue::I8(-2),
        MetadataValue::U16(3),
        MetadataValue::I16(-4),
        MetadataValue::U32(5),
        MetadataValue::I32(-6),
        MetadataValue::F32(7.5),
        MetadataValue::Bool(false),
        MetadataValue::String("eight".into()),
        MetadataValue::U64(u64::MAX),
        MetadataValue::I64(i64::MIN),
        MetadataValue::F64(-0.5),
        MetadataValue::Array(MetadataArray::U8(vec![1, 2])),
        MetadataValue::Array(MetadataArray::I8(vec![-1])),
        MetadataValue::Array(MetadataArray::U16(vec![65535])),
        MetadataValue::Array(MetadataArray::I16(vec![-2])),
        MetadataValue::Array(MetadataArray::U32(vec![])),
        MetadataValue::Array(MetadataArray::I32(vec![i32::MIN])),
        MetadataValue::Array(MetadataArray::F32(vec![0.5, 1.5])),
        MetadataValue::Array(MetadataArray::Bool(vec![true, false])),
        MetadataValue::Array(MetadataArray::U64(vec![9])),
        MetadataValue::Array(MetadataArray::I64(vec![-9])),
        MetadataValue::Array(MetadataArray::F64(vec![2.25])),
    ];
    let mut builder = GgufBuilder::new().version(2);
    for (index, value) in values.iter().enumerate() {
        builder = builder.metadata(&format!("value.{index}"), value.clone());
    }
    let file = GgufFile::parse(&builder.build()).expect("valid file");
    assert_eq!(file.version(), 2);
    for (index, value) in values.iter().enumerate() {
        assert_eq!(file.get(&format!("value.{index}")), Some(value));
    }
}
