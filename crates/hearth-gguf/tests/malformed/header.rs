//! The header and metadata: magic, versions, hostile counts and lengths, alignment, value
//! types, bools, nesting and keys, each refused with its own typed error.

use super::*;

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
