//! Fuzzes the GGUF parser through every entry point, checks that they agree, and asks a parsed
//! file every question the planner asks. Any panic, overflow (built with overflow checks),
//! out-of-memory or timeout is a bug.

#![no_main]

use hearth_gguf::{GgufError, GgufFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole_file = GgufFile::parse(data);
    let whole_file_stream = GgufFile::read_from(data, Some(data.len() as u64));
    let prefix = GgufFile::parse_prefix(data, None);
    let prefix_stream = GgufFile::read_from(data, None);

    // The slice and the stream read the same bytes under the same rules: same outcome.
    match (&whole_file, &whole_file_stream) {
        (Ok(from_slice), Ok(from_stream)) => assert_same_file(from_slice, from_stream),
        (Err(slice_error), Err(stream_error)) => {
            assert_eq!(format!("{slice_error:?}"), format!("{stream_error:?}"))
        }
        (slice, stream) => panic!("slice {slice:?} and stream {stream:?} disagree"),
    }
    // With the length unknown, a slice may report truncation earlier than a stream (it can
    // see that a count cannot fit), but success and failure must agree.
    match (&prefix, &prefix_stream) {
        (Ok(from_slice), Ok(from_stream)) => assert_same_file(from_slice, from_stream),
        (Err(_), Err(_)) => {}
        (slice, stream) => panic!("prefix slice {slice:?} and stream {stream:?} disagree"),
    }
    // A valid whole file is also a valid prefix; a whole file is never "truncated".
    if whole_file.is_ok() {
        assert!(prefix.is_ok(), "whole file parses but prefix fails: {prefix:?}");
    }
    if let Err(error) = &whole_file {
        assert!(!error.is_truncated(), "whole file reported as truncated: {error}");
    }

    for result in [&whole_file, &prefix] {
        match result {
            Ok(file) => exercise(file, data),
            Err(error) => check_error(error, data.len()),
        }
    }
});

fn assert_same_file(left: &GgufFile, right: &GgufFile) {
    assert_eq!(left.version(), right.version());
    // Compared through Debug: a NaN value is never `==` to itself, but prints the same.
    assert_eq!(format!("{:?}", left.metadata()), format!("{:?}", right.metadata()));
    assert_eq!(left.tensors(), right.tensors());
    assert_eq!(left.data_offset(), right.data_offset());
    assert_eq!(left.data_section_length(), right.data_section_length());
}

fn check_error(error: &GgufError, input_length: usize) {
    let _ = error.to_string();
    if let GgufError::Truncated {
        needed_bytes,
        available_bytes,
        ..
    } = error
    {
        assert!(needed_bytes > available_bytes, "{error}");
        assert_eq!(*available_bytes, input_length as u64, "{error}");
    }
}

/// Asks every question a caller might; none may panic.
fn exercise(file: &GgufFile, data: &[u8]) {
    let _ = file.architecture();
    let _ = file.model_name();
    let _ = file.block_count();
    let _ = file.context_length();
    let _ = file.embedding_length();
    if let Ok(Some(feed_forward)) = file.feed_forward_length() {
        let _ = feed_forward.max();
        let _ = feed_forward.for_layer(3);
    }
    let _ = file.head_count();
    if let Ok(Some(head_count_kv)) = file.head_count_kv() {
        let _ = head_count_kv.max();
        let _ = head_count_kv.to_vec(4);
    }
    let _ = file.key_length();
    let _ = file.value_length();
    let _ = file.sliding_window();
    let _ = file.sliding_window_attention();
    let _ = file.expert_count();
    let _ = file.expert_used_count();
    if let Ok(Some(file_type)) = file.file_type() {
        let _ = hearth_gguf::file_type_name(file_type);
    }
    let _ = file.chat_template();
    let _ = file.vocab_size();
    let _ = file.parameter_count();
    let total_bytes = file.total_tensor_bytes();
    assert!(total_bytes <= file.data_section_length());
    for entry in file.metadata() {
        let _ = file.get_u64(&entry.key);
        let _ = file.get_i64(&entry.key);
        let _ = file.get_f64(&entry.key);
        let _ = file.get_str(&entry.key);
        if let Ok(Some(array)) = file.get_array(&entry.key) {
            let _ = array.to_u64_vec();
            if let Some(strings) = array.as_strings() {
                assert_eq!(strings.iter().count(), strings.len());
            }
        }
    }
    for tensor in file.tensors() {
        assert!(tensor.dimensions.len() <= 4);
        assert_eq!(file.tensor(&tensor.name), Some(tensor));
        let range = file.tensor_data_range(tensor);
        assert_eq!(range.start % file.alignment(), file.data_offset() % file.alignment());
        if let Some(file_length) = file.file_length() {
            assert!(range.end <= file_length);
            assert_eq!(
                file.tensor_data(data, tensor).map(<[u8]>::len),
                Some(tensor.byte_size as usize)
            );
        }
    }
}
