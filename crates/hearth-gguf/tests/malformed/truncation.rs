//! Truncated, streamed and corrupted input: every prefix of a valid file, fetching what a
//! truncated parse asks for, streams against slices, headers read from disk without the
//! data, every single-byte corruption, and errors that name their context.

use super::*;

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
