//! The committed corpus in `tests/corpus/`: small files, each with the outcome it must give.
//! Fuzzer finds are added here as regression files. Regenerate the crafted ones with
//! `cargo test -p hearth-gguf --test corpus -- --ignored regenerate_crafted_corpus`.

mod common;

use std::path::{Path, PathBuf};

use common::{error_kind, valid_builder};
use hearth_gguf::{GgmlType, GgufBuilder, GgufFile, MetadataValue, MetadataValueType, RawTensor};

/// Every corpus file and the outcome of `GgufFile::parse` on it: `Ok`, or an error variant.
const EXPECTED_OUTCOMES: &[(&str, &str)] = &[
    ("valid-small.gguf", "Ok"),
    ("valid-version-2-no-tensors.gguf", "Ok"),
    ("bad-magic.gguf", "BadMagic"),
    ("version-1.gguf", "UnsupportedVersion"),
    ("big-endian.gguf", "BigEndianFile"),
    ("huge-tensor-count.gguf", "CountTooLarge"),
    ("huge-metadata-count.gguf", "CountTooLarge"),
    ("oversized-string-length.gguf", "StringTooLong"),
    ("tensor-past-end-of-file.gguf", "TensorDataOutOfBounds"),
    ("zero-alignment.gguf", "InvalidAlignment"),
    ("non-power-of-two-alignment.gguf", "InvalidAlignment"),
    ("unknown-array-element-type.gguf", "UnknownArrayElementType"),
    ("unknown-value-type.gguf", "UnknownValueType"),
    ("five-dimensions.gguf", "TooManyDimensions"),
    ("dimension-product-overflow.gguf", "ElementCountOverflow"),
    ("unaligned-tensor-offset.gguf", "UnalignedTensorOffset"),
    ("duplicate-key.gguf", "DuplicateKey"),
    ("truncated-in-metadata.gguf", "UnexpectedEndOfFile"),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

#[test]
fn every_corpus_file_gives_its_expected_outcome() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).expect("tests/corpus exists") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|extension| extension.to_str()) != Some("gguf") {
            continue;
        }
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = EXPECTED_OUTCOMES
            .iter()
            .find(|(name, _)| *name == file_name)
            .unwrap_or_else(|| panic!("{file_name} is not listed in EXPECTED_OUTCOMES"))
            .1;
        let bytes = std::fs::read(&path).expect("read corpus file");
        let outcome = match GgufFile::parse(&bytes) {
            Ok(file) => {
                // A file that parses must answer the planner's questions without panicking.
                let _ = file.architecture();
                let _ = file.block_count();
                let _ = file.sliding_window_attention();
                "Ok".to_owned()
            }
            Err(error) => error_kind(&error),
        };
        assert_eq!(outcome, expected, "{file_name}");
        // The other entry points must not panic either.
        let _ = GgufFile::parse_prefix(&bytes, None);
        let _ = GgufFile::read_from(bytes.as_slice(), None);
        let _ = GgufFile::open(&path);
        seen.push(file_name);
    }
    for (name, _) in EXPECTED_OUTCOMES {
        assert!(
            seen.iter().any(|seen_name| seen_name == name),
            "{name} is missing"
        );
    }
}

fn raw_f32_tensor(name: &str, n_dims: u32, dimensions: Vec<u64>, offset: Option<u64>) -> RawTensor {
    RawTensor {
        name: name.to_owned(),
        n_dims,
        dimensions,
        type_id: GgmlType::F32.id(),
        offset,
        data: vec![0; 32],
    }
}

/// Writes the crafted corpus files (not the fuzzer's regression files).
#[test]
#[ignore = "writes tests/corpus; run by hand after changing the crafted files"]
fn regenerate_crafted_corpus() {
    let string_with_length = |length: u64| {
        let mut payload = length.to_le_bytes().to_vec();
        payload.extend_from_slice(b"text");
        payload
    };
    let mut unknown_element_type = 99u32.to_le_bytes().to_vec();
    unknown_element_type.extend_from_slice(&1u64.to_le_bytes());
    let valid = valid_builder().build();
    let valid_file = GgufFile::parse(&valid).unwrap();
    let last_data_end = valid_file
        .tensor_data_range(valid_file.tensors().last().unwrap())
        .end as usize;
    // Cut the file inside the chat template, the last metadata value.
    let template_start = valid
        .windows(8)
        .position(|window| window == b"{% for m")
        .expect("the valid file has a chat template");
    let truncated_in_chat_template = template_start + 10;

    let files: Vec<(&str, Vec<u8>)> = vec![
        ("valid-small.gguf", valid.clone()),
        (
            "valid-version-2-no-tensors.gguf",
            GgufBuilder::new()
                .version(2)
                .metadata(
                    "general.architecture",
                    MetadataValue::String("llama".into()),
                )
                .build(),
        ),
        ("bad-magic.gguf", valid_builder().magic(*b"GGJT").build()),
        ("version-1.gguf", valid_builder().version(1).build()),
        (
            "big-endian.gguf",
            valid_builder().version(3u32.swap_bytes()).build(),
        ),
        (
            "huge-tensor-count.gguf",
            valid_builder().declared_tensor_count(u64::MAX / 2).build(),
        ),
        (
            "huge-metadata-count.gguf",
            valid_builder().declared_metadata_count(1 << 40).build(),
        ),
        (
            "oversized-string-length.gguf",
            GgufBuilder::new()
                .raw_metadata(
                    "general.name",
                    MetadataValueType::String.tag(),
                    string_with_length(u64::MAX - 1),
                )
                .build(),
        ),
        (
            "tensor-past-end-of-file.gguf",
            valid[..last_data_end - 1].to_vec(),
        ),
        ("zero-alignment.gguf", valid_builder().alignment(0).build()),
        (
            "non-power-of-two-alignment.gguf",
            valid_builder().alignment(24).build(),
        ),
        (
            "unknown-array-element-type.gguf",
            GgufBuilder::new()
                .raw_metadata(
                    "test.array",
                    MetadataValueType::Array.tag(),
                    unknown_element_type,
                )
                .build(),
        ),
        (
            "unknown-value-type.gguf",
            GgufBuilder::new()
                .raw_metadata("test.value", 0x4000, vec![0; 8])
                .build(),
        ),
        (
            "five-dimensions.gguf",
            GgufBuilder::new()
                .raw_tensor(raw_f32_tensor("t", 5, vec![1; 5], None))
                .build(),
        ),
        (
            "dimension-product-overflow.gguf",
            GgufBuilder::new()
                .raw_tensor(raw_f32_tensor(
                    "t",
                    3,
                    vec![1 << 30, 1 << 30, 1 << 30],
                    None,
                ))
                .build(),
        ),
        (
            "unaligned-tensor-offset.gguf",
            GgufBuilder::new()
                .raw_tensor(raw_f32_tensor("t", 1, vec![8], Some(17)))
                .build(),
        ),
        (
            "duplicate-key.gguf",
            valid_builder()
                .metadata(
                    "general.architecture",
                    MetadataValue::String("llama".into()),
                )
                .build(),
        ),
        (
            "truncated-in-metadata.gguf",
            valid[..truncated_in_chat_template].to_vec(),
        ),
    ];
    for (name, bytes) in files {
        std::fs::write(corpus_dir().join(name), bytes).expect("write corpus file");
    }
}
