//! Crafted files, valid and malformed: each malformation gives its own typed error, every
//! prefix of a valid file is handled, and nothing panics.

mod common;

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

#[test]
fn bad_magic() {
    let error = parse_error(&valid_builder().magic(*b"GGML").build());
    assert!(
        matches!(error, GgufError::BadMagic { found } if &found == b"GGML"),
        "{error:?}"
    );
}

#[test]
fn unsupported_versions() {
    for version in [0, 1, 4, 1000] {
        let error = parse_error(&valid_builder().version(version).build());
        assert!(
            matches!(error, GgufError::UnsupportedVersion { version: found } if found == version),
            "version {version}: {error:?}"
        );
    }
    let error = parse_error(&valid_builder().version(3u32.swap_bytes()).build());
    assert!(
        matches!(error, GgufError::BigEndianFile { .. }),
        "{error:?}"
    );
}

#[test]
fn huge_tensor_count() {
    for declared in [u64::MAX, MAX_TENSOR_COUNT + 1] {
        let error = parse_error(&valid_builder().declared_tensor_count(declared).build());
        assert!(
            matches!(&error, GgufError::CountTooLarge { what, count, limit, offset: 8 }
                if what == "tensor count" && *count == declared && *limit == MAX_TENSOR_COUNT),
            "{error:?}"
        );
    }
    // Under the sanity limit, but more than the file could hold.
    let bytes = valid_builder().declared_tensor_count(100_000).build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::CountTooLarge { what, count: 100_000, limit, .. }
            if what.starts_with("tensor count") && *limit < 100_000),
        "{error:?}"
    );
    // As a prefix of a file of unknown length, it asks for more bytes instead.
    let error = GgufFile::parse_prefix(&bytes, None).unwrap_err();
    assert!(
        matches!(error, GgufError::Truncated { needed_bytes, .. } if needed_bytes > 2_400_000),
        "{error:?}"
    );
}

#[test]
fn huge_metadata_count() {
    let error = parse_error(&valid_builder().declared_metadata_count(u64::MAX).build());
    assert!(
        matches!(&error, GgufError::CountTooLarge { what, limit, offset: 16, .. }
            if what == "metadata count" && *limit == MAX_METADATA_COUNT),
        "{error:?}"
    );
    let error = parse_error(&valid_builder().declared_metadata_count(5000).build());
    assert!(
        matches!(&error, GgufError::CountTooLarge { what, count: 5000, .. }
            if what.starts_with("metadata count")),
        "{error:?}"
    );
}

#[test]
fn oversized_string_lengths() {
    let mut payload = u64::MAX.to_le_bytes().to_vec();
    payload.extend_from_slice(b"short");
    let bytes = valid_builder()
        .raw_metadata("general.license", MetadataValueType::String.tag(), payload)
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::StringTooLong { length: u64::MAX, limit, context, .. }
            if *limit == MAX_STRING_VALUE_LENGTH && context.contains("general.license")),
        "{error:?}"
    );

    // Within the limit but longer than the rest of the file.
    let mut payload = 1_000_000u64.to_le_bytes().to_vec();
    payload.extend_from_slice(b"short");
    let bytes = GgufBuilder::new()
        .raw_metadata("general.license", MetadataValueType::String.tag(), payload)
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::UnexpectedEndOfFile { needed_bytes, file_length, .. }
            if *needed_bytes > 1_000_000 && *file_length == bytes.len() as u64),
        "{error:?}"
    );

    // A key longer than the specification allows.
    let key = "k".repeat(70_000);
    let error = parse_error(
        &GgufBuilder::new()
            .metadata(&key, MetadataValue::U8(0))
            .build(),
    );
    assert!(
        matches!(error, GgufError::StringTooLong { length: 70_000, .. }),
        "{error:?}"
    );

    // A string element of an array.
    let mut payload = MetadataValueType::String.tag().to_le_bytes().to_vec();
    payload.extend_from_slice(&1u64.to_le_bytes());
    payload.extend_from_slice(&(MAX_STRING_VALUE_LENGTH + 1).to_le_bytes());
    let bytes = GgufBuilder::new()
        .raw_metadata(
            "tokenizer.ggml.tokens",
            MetadataValueType::Array.tag(),
            payload,
        )
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::StringTooLong { context, .. } if context.contains("string element")),
        "{error:?}"
    );
}

#[test]
fn huge_array_length() {
    let mut payload = MetadataValueType::U32.tag().to_le_bytes().to_vec();
    payload.extend_from_slice(&u64::MAX.to_le_bytes());
    let bytes = GgufBuilder::new()
        .raw_metadata("test.array", MetadataValueType::Array.tag(), payload)
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::CountTooLarge { what, count: u64::MAX, .. }
            if what.contains("'test.array'")),
        "{error:?}"
    );
}

#[test]
fn tensor_past_the_end_of_the_file() {
    let bytes = valid_builder().build();
    let file = GgufFile::parse(&bytes).unwrap();
    let last = file.tensors().last().unwrap();
    let data_end = file.tensor_data_range(last).end;
    let error = parse_error(&bytes[..data_end as usize - 1]);
    assert!(
        matches!(&error, GgufError::TensorDataOutOfBounds { tensor, data_end: end, file_length, .. }
            if *tensor == last.name && *end == data_end && *file_length == data_end - 1),
        "{error:?}"
    );
    // The last tensor's padding may be missing: llama.cpp only needs the data itself.
    assert!(GgufFile::parse(&bytes[..data_end as usize]).is_ok());

    // A tensor far bigger than the file.
    let bytes = GgufBuilder::new()
        .raw_tensor(raw_f32_tensor("huge", vec![1 << 20, 1 << 20]))
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::TensorDataOutOfBounds { tensor, .. } if tensor == "huge"),
        "{error:?}"
    );
    // Without a known file length the extent is not checked, so the header alone parses.
    assert!(GgufFile::parse_prefix(&bytes, None).is_ok());
    assert!(GgufFile::parse_prefix(&bytes, Some(bytes.len() as u64)).is_err());
}

#[test]
fn alignment_must_be_a_power_of_two_u32() {
    for alignment in [0, 3, 48] {
        let error = parse_error(&valid_builder().alignment(alignment).build());
        assert!(
            matches!(error, GgufError::InvalidAlignment { alignment: found } if found == u64::from(alignment)),
            "alignment {alignment}: {error:?}"
        );
    }
    let bytes = valid_builder()
        .metadata("general.alignment", MetadataValue::U64(64))
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::TypeMismatch { key, expected: "u32", actual }
            if key == "general.alignment" && actual == "u64"),
        "{error:?}"
    );
    for alignment in [1, 8, 64, 4096] {
        let file = GgufFile::parse(&valid_builder().alignment(alignment).build())
            .unwrap_or_else(|error| panic!("alignment {alignment}: {error}"));
        assert_eq!(file.alignment(), u64::from(alignment));
        assert_eq!(file.data_offset() % u64::from(alignment), 0);
    }
}

#[test]
fn unknown_array_element_type() {
    let mut payload = 99u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&1u64.to_le_bytes());
    let bytes = valid_builder()
        .raw_metadata("test.bad_array", MetadataValueType::Array.tag(), payload)
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::UnknownArrayElementType { key, type_tag: 99, .. } if key == "test.bad_array"),
        "{error:?}"
    );
}

#[test]
fn unknown_value_type() {
    let bytes = valid_builder()
        .raw_metadata("test.bad_type", 13, vec![0; 8])
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::UnknownValueType { key, type_tag: 13, .. } if key == "test.bad_type"),
        "{error:?}"
    );
}

#[test]
fn arrays_nest_up_to_the_limit() {
    fn nested(depth: u32) -> MetadataArray {
        match depth {
            1 => MetadataArray::U8(vec![7]),
            _ => MetadataArray::Array(vec![nested(depth - 1)]),
        }
    }
    let deepest = MetadataValue::Array(nested(MAX_ARRAY_NESTING_DEPTH));
    let bytes = GgufBuilder::new().metadata("deep", deepest.clone()).build();
    assert_eq!(GgufFile::parse(&bytes).unwrap().get("deep"), Some(&deepest));

    let too_deep = MetadataValue::Array(nested(MAX_ARRAY_NESTING_DEPTH + 1));
    let error = parse_error(&GgufBuilder::new().metadata("deep", too_deep).build());
    assert!(
        matches!(
            error,
            GgufError::ArrayNestingTooDeep {
                limit: MAX_ARRAY_NESTING_DEPTH,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn invalid_bools() {
    let bytes = GgufBuilder::new()
        .raw_metadata("test.flag", MetadataValueType::Bool.tag(), vec![2])
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(error, GgufError::InvalidBool { value: 2, .. }),
        "{error:?}"
    );

    let mut payload = MetadataValueType::Bool.tag().to_le_bytes().to_vec();
    payload.extend_from_slice(&3u64.to_le_bytes());
    payload.extend_from_slice(&[0, 1, 255]);
    let bytes = GgufBuilder::new()
        .raw_metadata("test.flags", MetadataValueType::Array.tag(), payload)
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(error, GgufError::InvalidBool { value: 255, .. }),
        "{error:?}"
    );
}

#[test]
fn keys_must_be_unique_nonempty_utf8() {
    let bytes = valid_builder()
        .metadata("llama.block_count", MetadataValue::U32(3))
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::DuplicateKey { key, .. } if key == "llama.block_count"),
        "{error:?}"
    );

    let error = parse_error(
        &GgufBuilder::new()
            .metadata("", MetadataValue::U64(0))
            .build(),
    );
    assert!(
        matches!(
            error,
            GgufError::EmptyKey {
                index: 0,
                offset: 24
            }
        ),
        "{error:?}"
    );

    let mut bytes = GgufBuilder::new()
        .metadata("ab", MetadataValue::U8(0))
        .build();
    let key_start = 24 + 8;
    bytes[key_start] = 0xff;
    let error = parse_error(&bytes);
    assert!(
        matches!(error, GgufError::InvalidUtf8 { offset: 24, .. }),
        "{error:?}"
    );

    // Values are decoded leniently, as llama.cpp does.
    let bytes = GgufBuilder::new()
        .raw_metadata(
            "test.text",
            MetadataValueType::String.tag(),
            string_payload(b"a\xffb"),
        )
        .build();
    let file = GgufFile::parse(&bytes).unwrap();
    assert_eq!(file.get_str("test.text").unwrap(), Some("a\u{fffd}b"));
}

#[test]
fn tensor_dimensions() {
    let five = raw_f32_tensor("five", vec![1, 1, 1, 1, 1]);
    let error = parse_error(&GgufBuilder::new().raw_tensor(five).build());
    assert!(
        matches!(&error, GgufError::TooManyDimensions { tensor, n_dims: 5, limit: 4 } if tensor == "five"),
        "{error:?}"
    );

    let overflow = raw_f32_tensor("overflow", vec![1 << 32, 1 << 32]);
    let error = parse_error(&GgufBuilder::new().raw_tensor(overflow).build());
    assert!(
        matches!(&error, GgufError::ElementCountOverflow { tensor, dimensions }
            if tensor == "overflow" && dimensions == &[1 << 32, 1 << 32]),
        "{error:?}"
    );

    let negative = raw_f32_tensor("negative", vec![u64::MAX]);
    let error = parse_error(&GgufBuilder::new().raw_tensor(negative).build());
    assert!(
        matches!(
            error,
            GgufError::DimensionTooLarge {
                dimension_index: 0,
                value: u64::MAX,
                ..
            }
        ),
        "{error:?}"
    );

    let mut too_many_bytes = raw_f32_tensor("too_many_bytes", vec![1 << 61, 2]);
    too_many_bytes.type_id = GgmlType::F64.id();
    let error = parse_error(&GgufBuilder::new().raw_tensor(too_many_bytes).build());
    assert!(
        matches!(error, GgufError::TensorSizeOverflow { .. }),
        "{error:?}"
    );

    // A zero dimension makes an empty tensor, whatever the other dimensions are.
    let empty = raw_f32_tensor("empty", vec![1 << 62, 0, 1 << 62]);
    let file = GgufFile::parse(&GgufBuilder::new().raw_tensor(empty).build()).unwrap();
    assert_eq!(file.tensors()[0].byte_size, 0);

    // A tensor with no dimensions is a scalar.
    let scalar = raw_f32_tensor("scalar", vec![]);
    let file = GgufFile::parse(&GgufBuilder::new().raw_tensor(scalar).build()).unwrap();
    assert_eq!(file.tensors()[0].element_count, 1);
    assert_eq!(file.tensors()[0].byte_size, 4);
}

#[test]
fn tensor_types_and_rows() {
    for type_id in [4, 5, 31, 36, 43, u32::MAX] {
        let mut tensor = raw_f32_tensor("weird", vec![32]);
        tensor.type_id = type_id;
        let error = parse_error(&GgufBuilder::new().raw_tensor(tensor).build());
        assert!(
            matches!(error, GgufError::UnknownTensorType { type_id: found, .. } if found == type_id),
            "type {type_id}: {error:?}"
        );
    }
    let error = parse_error(
        &GgufBuilder::new()
            .tensor("ragged", GgmlType::Q4_0, &[33, 2])
            .build(),
    );
    assert!(
        matches!(
            error,
            GgufError::RowNotMultipleOfBlock {
                ggml_type: GgmlType::Q4_0,
                row_length: 33,
                block_size: 32,
                ..
            }
        ),
        "{error:?}"
    );
    // Every known type parses at one block per row.
    for ggml_type in GgmlType::all() {
        let bytes = GgufBuilder::new()
            .tensor("t", ggml_type, &[ggml_type.block_size(), 3])
            .build();
        let file = GgufFile::parse(&bytes).unwrap_or_else(|error| panic!("{ggml_type}: {error}"));
        assert_eq!(file.total_tensor_bytes(), 3 * ggml_type.block_byte_size());
    }
}

#[test]
fn tensor_names() {
    let long_name = "n".repeat(MAX_TENSOR_NAME_LENGTH as usize + 1);
    let error = parse_error(
        &GgufBuilder::new()
            .tensor(&long_name, GgmlType::F32, &[1])
            .build(),
    );
    assert!(
        matches!(
            error,
            GgufError::TensorNameTooLong {
                length: 64,
                limit: 63,
                ..
            }
        ),
        "{error:?}"
    );
    let longest = "n".repeat(MAX_TENSOR_NAME_LENGTH as usize);
    assert!(GgufFile::parse(
        &GgufBuilder::new()
            .tensor(&longest, GgmlType::F32, &[1])
            .build()
    )
    .is_ok());

    let error = parse_error(
        &GgufBuilder::new()
            .tensor("same", GgmlType::F32, &[1])
            .tensor("same", GgmlType::F32, &[1])
            .build(),
    );
    assert!(
        matches!(&error, GgufError::DuplicateTensorName { name, .. } if name == "same"),
        "{error:?}"
    );
}

#[test]
fn tensor_offsets() {
    let mut first = raw_f32_tensor("first", vec![8]);
    first.offset = Some(4);
    let error = parse_error(&GgufBuilder::new().raw_tensor(first).build());
    assert!(
        matches!(&error, GgufError::UnalignedTensorOffset { tensor, offset: 4, alignment: 32 } if tensor == "first"),
        "{error:?}"
    );

    // Aligned, but not where llama.cpp expects the second tensor.
    let mut second = raw_f32_tensor("second", vec![8]);
    second.offset = Some(64);
    let bytes = GgufBuilder::new()
        .raw_tensor(raw_f32_tensor("first", vec![8]))
        .raw_tensor(second)
        .build();
    let error = parse_error(&bytes);
    assert!(
        matches!(&error, GgufError::TensorOffsetMismatch { tensor, offset: 64, expected: 32 } if tensor == "second"),
        "{error:?}"
    );

    let mut far = raw_f32_tensor("far", vec![8]);
    far.offset = Some(u64::MAX - 31);
    let error = parse_error(&GgufBuilder::new().raw_tensor(far).build());
    assert!(
        matches!(error, GgufError::TensorOffsetMismatch { .. }),
        "{error:?}"
    );
}

#[test]
fn typed_accessors_report_mismatches() {
    let bytes = valid_builder()
        .metadata("test.negative", MetadataValue::I32(-3))
        .metadata("test.huge", MetadataValue::U64(u64::MAX))
        .build();
    let file = GgufFile::parse(&bytes).unwrap();
    let error = file.get_u64("general.name").unwrap_err();
    assert!(
        matches!(&error, GgufError::TypeMismatch { key, actual, .. } if key == "general.name" && actual == "string"),
        "{error:?}"
    );
    assert!(matches!(
        file.get_u64("test.negative"),
        Err(GgufError::ValueOutOfRange { .. })
    ));
    assert!(matches!(
        file.get_i64("test.huge"),
        Err(GgufError::ValueOutOfRange { .. })
    ));
    assert!(matches!(
        file.get_str("llama.block_count"),
        Err(GgufError::TypeMismatch {
            expected: "a string",
            ..
        })
    ));
    let error = file.get_array("general.file_type").unwrap_err();
    assert!(
        matches!(&error, GgufError::TypeMismatch { actual, .. } if actual == "u32"),
        "{error:?}"
    );
    let error = file.get_bool("tokenizer.ggml.scores").unwrap_err();
    assert!(
        matches!(&error, GgufError::TypeMismatch { actual, .. } if actual == "array of f32"),
        "{error:?}"
    );
    assert_eq!(file.get_u64("no.such.key").unwrap(), None);
    assert!(matches!(
        file.require_u64("no.such.key"),
        Err(GgufError::MissingKey { key }) if key == "no.such.key"
    ));
    assert!(matches!(
        file.get_f64("llama.block_count"),
        Err(GgufError::TypeMismatch { .. })
    ));
}

#[test]
fn model_accessors_check_layer_counts() {
    for block_count in [0, 513, i32::MAX as u32] {
        let file = GgufFile::parse(
            &GgufBuilder::new()
                .metadata(
                    "general.architecture",
                    MetadataValue::String("llama".into()),
                )
                .metadata("llama.block_count", MetadataValue::U32(block_count))
                .build(),
        )
        .unwrap();
        assert!(
            matches!(file.block_count(), Err(GgufError::ValueOutOfRange { .. })),
            "block count {block_count}"
        );
    }
    let file = GgufFile::parse(
        &GgufBuilder::new()
            .metadata(
                "general.architecture",
                MetadataValue::String("llama".into()),
            )
            .metadata("llama.block_count", MetadataValue::U32(3))
            .metadata(
                "llama.attention.head_count_kv",
                MetadataValue::Array(MetadataArray::U32(vec![1, 2])),
            )
            .metadata(
                "llama.feed_forward_length",
                MetadataValue::Array(MetadataArray::F32(vec![1.0, 2.0, 3.0])),
            )
            .metadata("llama.expert_count", MetadataValue::U32(2048))
            .build(),
    )
    .unwrap();
    assert!(matches!(
        file.head_count_kv(),
        Err(GgufError::PerLayerLengthMismatch {
            length: 2,
            block_count: 3,
            ..
        })
    ));
    assert!(matches!(
        file.feed_forward_length(),
        Err(GgufError::TypeMismatch { .. })
    ));
    assert!(matches!(
        file.expert_count(),
        Err(GgufError::ValueOutOfRange { .. })
    ));
    assert!(matches!(
        file.context_length(),
        Err(GgufError::MissingKey { .. })
    ));
    // No head count: head lengths cannot be derived.
    assert_eq!(file.key_length().unwrap(), None);

    let no_architecture = GgufFile::parse(&GgufBuilder::new().build()).unwrap();
    assert!(matches!(
        no_architecture.architecture(),
        Err(GgufError::MissingKey { key }) if key == "general.architecture"
    ));
    assert_eq!(no_architecture.parameter_count(), 0);
}

#[test]
fn sliding_window_layouts() {
    fn model_with_window(
        architecture: &str,
        window: u32,
        extra: &[(&str, MetadataValue)],
    ) -> GgufFile {
        let mut builder = GgufBuilder::new()
            .metadata(
                "general.architecture",
                MetadataValue::String(architecture.into()),
            )
            .metadata(
                &format!("{architecture}.block_count"),
                MetadataValue::U32(7),
            )
            .metadata(
                &format!("{architecture}.attention.sliding_window"),
                MetadataValue::U32(window),
            );
        for (suffix, value) in extra {
            builder = builder.metadata(&format!("{architecture}.{suffix}"), value.clone());
        }
        GgufFile::parse(&builder.build()).unwrap()
    }
    let model = |architecture: &str, extra: &[(&str, MetadataValue)]| {
        model_with_window(architecture, 512, extra)
    };
    let layers = |file: &GgufFile| {
        file.sliding_window_attention()
            .unwrap()
            .map(|attention| attention.layer_uses_sliding_window)
    };
    // gemma3's built-in period: five sliding layers, then one global.
    let gemma3 = model("gemma3", &[]);
    assert_eq!(
        layers(&gemma3),
        Some(vec![true, true, true, true, true, false, true])
    );
    assert_eq!(
        gemma3
            .sliding_window_attention()
            .unwrap()
            .unwrap()
            .window_length,
        512
    );
    // An explicit period, and an explicit per-layer list.
    let period = model(
        "gemma3",
        &[("attention.sliding_window_pattern", MetadataValue::U32(2))],
    );
    assert_eq!(
        layers(&period),
        Some(vec![true, false, true, false, true, false, true])
    );
    let flags = vec![false, true, true, false, false, true, true];
    let listed = model(
        "mystery",
        &[(
            "attention.sliding_window_pattern",
            MetadataValue::Array(MetadataArray::Bool(flags.clone())),
        )],
    );
    assert_eq!(layers(&listed), Some(flags));
    // llama.cpp ignores the window for architectures it does not know to use one.
    assert_eq!(layers(&model("llama", &[])), None);
    assert_eq!(layers(&model_with_window("gemma3", 0, &[])), None);
    let wrong_length = model(
        "gemma3",
        &[(
            "attention.sliding_window_pattern",
            MetadataValue::Array(MetadataArray::Bool(vec![true])),
        )],
    );
    assert!(matches!(
        wrong_length.sliding_window_attention(),
        Err(GgufError::PerLayerLengthMismatch {
            length: 1,
            block_count: 7,
            ..
        })
    ));
}

/// Checks every prefix of `bytes` (a valid file) in the three parsing modes.
fn check_every_prefix(bytes: &[u8]) {
    let full = GgufFile::parse(bytes).expect("valid file");
    let header_end = full.tensor_infos_end() as usize;
    let data_end = full
        .tensors()
        .iter()
        .map(|tensor| full.tensor_data_range(tensor).end)
        .max()
        .unwrap_or(full.tensor_infos_end()) as usize;
    let file_length = bytes.len() as u64;
    for prefix_length in 0..=bytes.len() {
        let prefix = &bytes[..prefix_length];

        // A prefix of a file of unknown length: retryable until the tensor infos are in.
        match GgufFile::parse_prefix(prefix, None) {
            Ok(file) => {
                assert!(prefix_length >= header_end, "prefix {prefix_length} parsed");
                assert_eq!(file.metadata(), full.metadata());
                assert_eq!(file.tensors(), full.tensors());
            }
            Err(GgufError::Truncated {
                needed_bytes,
                available_bytes,
                ..
            }) => {
                assert!(prefix_length < header_end);
                assert_eq!(available_bytes, prefix_length as u64);
                assert!(
                    needed_bytes > prefix_length as u64,
                    "prefix {prefix_length}"
                );
                assert!(needed_bytes <= header_end as u64, "prefix {prefix_length}");
            }
            Err(other) => panic!("prefix {prefix_length} of unknown length: {other:?}"),
        }

        // A prefix of a file of known length: the same, and the data extents are checked.
        match GgufFile::parse_prefix(prefix, Some(file_length)) {
            Ok(_) => assert!(prefix_length >= header_end),
            Err(GgufError::Truncated { needed_bytes, .. }) => {
                assert!(needed_bytes > prefix_length as u64 && needed_bytes <= file_length)
            }
            Err(other) => panic!("prefix {prefix_length} of known length: {other:?}"),
        }

        // The same prefix from a stream.
        match GgufFile::read_from(prefix, None) {
            Ok(_) => assert!(prefix_length >= header_end),
            Err(GgufError::Truncated { needed_bytes, .. }) => {
                assert!(needed_bytes > prefix_length as u64)
            }
            Err(other) => panic!("stream of {prefix_length} bytes: {other:?}"),
        }

        // The prefix as a whole (truncated) file: a definite error, never "fetch more".
        match GgufFile::parse(prefix) {
            Ok(_) => assert!(prefix_length >= data_end, "prefix {prefix_length} parsed"),
            Err(error) => {
                assert!(prefix_length < data_end);
                assert!(!error.is_truncated(), "prefix {prefix_length}: {error:?}");
            }
        }
    }
}

#[test]
fn every_prefix_of_a_valid_file_is_handled() {
    check_every_prefix(&valid_builder().build());
    check_every_prefix(&GgufBuilder::new().version(2).build());
    check_every_prefix(
        &GgufBuilder::new()
            .alignment(64)
            .tensor("a", GgmlType::F16, &[3])
            .tensor("b", GgmlType::Q6K, &[256])
            .build(),
    );
}

#[test]
fn fetching_what_truncated_asks_for_converges() {
    let bytes = valid_builder().build();
    let mut fetched = 1;
    let mut rounds = 0;
    let file = loop {
        rounds += 1;
        assert!(rounds < 100, "no convergence");
        match GgufFile::parse_prefix(&bytes[..fetched], Some(bytes.len() as u64)) {
            Ok(file) => break file,
            Err(error) => {
                let needed = error.needed_bytes().unwrap_or_else(|| panic!("{error:?}"));
                assert!(needed as usize > fetched);
                fetched = needed as usize;
            }
        }
    };
    assert_eq!(fetched as u64, file.tensor_infos_end());
}

/// A reader that hands out one byte per call, like a slow network stream.
struct OneByteAtATime<'bytes>(&'bytes [u8]);

impl Read for OneByteAtATime<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buffer.first_mut()) {
            (Some((first, rest)), Some(slot)) => {
                *slot = *first;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// A reader that fails after some bytes.
struct FailingReader<'bytes>(&'bytes [u8]);

impl Read for FailingReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::other("connection reset"));
        }
        let count = buffer.len().min(self.0.len());
        buffer[..count].copy_from_slice(&self.0[..count]);
        self.0 = &self.0[count..];
        Ok(count)
    }
}

#[test]
fn streams_parse_like_slices() {
    let bytes = valid_builder().build();
    let from_slice = GgufFile::parse(&bytes).unwrap();
    let from_stream =
        GgufFile::read_from(OneByteAtATime(&bytes), Some(bytes.len() as u64)).unwrap();
    assert_eq!(from_stream.metadata(), from_slice.metadata());
    assert_eq!(from_stream.tensors(), from_slice.tensors());
    assert_eq!(from_stream.data_offset(), from_slice.data_offset());

    let error = GgufFile::read_from(FailingReader(&bytes[..40]), None).unwrap_err();
    assert!(matches!(error, GgufError::Io { .. }), "{error:?}");

    // A stream of known length that ends early is a broken file.
    let error = GgufFile::read_from(&bytes[..100], Some(bytes.len() as u64 - 1)).unwrap_err();
    assert!(matches!(error, GgufError::Truncated { .. }), "{error:?}");
    let short = valid_builder().build();
    let error = GgufFile::read_from(&short[..100], Some(100)).unwrap_err();
    assert!(
        matches!(
            error,
            GgufError::UnexpectedEndOfFile {
                file_length: 100,
                ..
            } | GgufError::CountTooLarge { .. }
        ),
        "{error:?}"
    );
}

#[test]
fn open_reads_from_disk_without_the_tensor_data() {
    let bytes = valid_builder().build();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("tiny.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.file_length(), Some(bytes.len() as u64));
    assert_eq!(file.tensors().len(), 3);

    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let error = GgufFile::open(&path).unwrap_err();
    assert!(
        matches!(error, GgufError::TensorDataOutOfBounds { .. }),
        "{error:?}"
    );

    let error = GgufFile::open(&directory.path().join("missing.gguf")).unwrap_err();
    assert!(matches!(error, GgufError::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("missing.gguf"));
}

#[test]
fn every_single_byte_corruption_is_handled() {
    // A cheap deterministic cousin of the fuzzer: flip each byte of the header in a few ways.
    let bytes = valid_builder().build();
    let header_end = GgufFile::parse(&bytes).unwrap().tensor_infos_end() as usize;
    let mut mutated = bytes.clone();
    for position in 0..header_end {
        for replacement in [
            0x00,
            0xff,
            bytes[position] ^ 0x80,
            bytes[position].wrapping_add(1),
        ] {
            mutated[position] = replacement;
            if let Ok(file) = GgufFile::parse(&mutated) {
                // Whatever parsed must answer every question without panicking.
                let _ = file.architecture();
                let _ = file.block_count();
                let _ = file.head_count_kv();
                let _ = file.sliding_window_attention();
                let _ = file.vocab_size();
                let _ = file.parameter_count();
            }
            let _ = GgufFile::parse_prefix(&mutated, None);
        }
        mutated[position] = bytes[position];
    }
}

#[test]
fn errors_name_their_context() {
    let mut payload = 1_000u64.to_le_bytes().to_vec();
    payload.extend_from_slice(b"abc");
    let bytes = GgufBuilder::new()
        .raw_metadata(
            "tokenizer.chat_template",
            MetadataValueType::String.tag(),
            payload,
        )
        .build();
    let error = GgufFile::parse_prefix(&bytes, None).unwrap_err();
    // Header 24, key length 8, key 23, type tag 4, string length 8, then the string.
    assert_eq!(error.needed_bytes(), Some(24 + 8 + 23 + 4 + 8 + 1000));
    let message = error.to_string();
    assert!(message.contains("'tokenizer.chat_template'"), "{message}");
}
