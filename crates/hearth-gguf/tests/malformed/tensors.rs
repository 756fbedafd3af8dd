//! Tensor infos: dimensions, types and row sizes, names and data offsets, each checked
//! with its own typed error.

use super::*;

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
