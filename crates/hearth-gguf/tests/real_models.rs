//! The two real test models (fetched by scripts/fetch-test-models), checked against facts
//! measured independently of this crate.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Instant;

use common::test_model;
use hearth_gguf::{file_type_name, GgmlType, GgufError, GgufFile, PerLayerValue};

const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA3_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
const MEBIBYTE: usize = 1024 * 1024;

/// The first `length` bytes of a test model.
fn read_prefix(file_name: &str, length: usize) -> Vec<u8> {
    let file = std::fs::File::open(test_model(file_name)).expect("open test model");
    let mut prefix = Vec::with_capacity(length);
    file.take(length as u64)
        .read_to_end(&mut prefix)
        .expect("read test model");
    prefix
}

fn file_length(file_name: &str) -> u64 {
    std::fs::metadata(test_model(file_name))
        .expect("stat test model")
        .len()
}

fn type_histogram(file: &GgufFile) -> BTreeMap<GgmlType, usize> {
    let mut histogram = BTreeMap::new();
    for tensor in file.tensors() {
        *histogram.entry(tensor.ggml_type).or_default() += 1;
    }
    histogram
}

/// Parses the whole file from memory, from disk, and from a prefix, and checks they agree.
fn parse_every_way(file_name: &str, prefix_length: usize) -> GgufFile {
    let bytes = std::fs::read(test_model(file_name)).expect("read test model");
    let started = Instant::now();
    let from_memory = GgufFile::parse(&bytes).expect("whole file parses");
    eprintln!("{file_name}: parsed in {:?}", started.elapsed());

    let from_disk = GgufFile::open(&test_model(file_name)).expect("file parses from disk");
    let prefix = &bytes[..prefix_length];
    let from_prefix =
        GgufFile::parse_prefix(prefix, Some(bytes.len() as u64)).expect("prefix parses");
    let from_prefix_unknown_length =
        GgufFile::parse_prefix(prefix, None).expect("prefix parses without the file length");
    let from_stream = GgufFile::read_from(prefix, None).expect("prefix stream parses");
    for other in [
        &from_disk,
        &from_prefix,
        &from_prefix_unknown_length,
        &from_stream,
    ] {
        assert_eq!(other.metadata(), from_memory.metadata());
        assert_eq!(other.tensors(), from_memory.tensors());
        assert_eq!(other.data_offset(), from_memory.data_offset());
    }
    assert_eq!(from_disk.file_length(), Some(bytes.len() as u64));
    assert_eq!(from_prefix_unknown_length.file_length(), None);

    // The data section holds exactly the tensors' bytes, so every tensor is accounted for.
    assert_eq!(
        from_memory.data_offset() + from_memory.total_tensor_bytes(),
        bytes.len() as u64
    );
    assert_eq!(
        from_memory.data_section_length(),
        bytes.len() as u64 - from_memory.data_offset()
    );
    from_memory
}

/// Starting from `first_fetch` bytes, fetches more until the header parses, as the model
/// library does over HTTP Range requests: `needed_bytes` is a lower bound (the parser cannot
/// know how long a vocabulary is before reading it), so each fetch at least doubles the prefix.
/// Returns the number of fetches.
fn fetch_until_parsed(file_name: &str, first_fetch: usize) -> (GgufFile, usize) {
    let total_length = file_length(file_name);
    let mut fetched = first_fetch;
    for fetch_count in 1..=20 {
        let prefix = read_prefix(file_name, fetched);
        match GgufFile::parse_prefix(&prefix, Some(total_length)) {
            Ok(file) => return (file, fetch_count),
            Err(GgufError::Truncated { needed_bytes, .. }) => {
                assert!(needed_bytes as usize > fetched);
                assert!(needed_bytes <= total_length);
                fetched = (needed_bytes as usize)
                    .max(fetched * 2)
                    .min(total_length as usize);
            }
            Err(other) => panic!("{file_name} prefix of {fetched} bytes: {other}"),
        }
    }
    panic!("{file_name}: the header did not parse after 20 fetches");
}

#[test]
fn smollm2_facts() {
    let file = parse_every_way(SMOLLM2_FILE, 2 * MEBIBYTE);
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.metadata().len(), 33);
    assert_eq!(file.tensors().len(), 272);
    assert_eq!(file.architecture().unwrap(), "llama");
    assert_eq!(
        file.model_name().unwrap(),
        Some("Smollm2 135M 8k Lc100K Mix1 Ep2")
    );
    assert_eq!(file.block_count().unwrap(), 30);
    assert_eq!(file.context_length().unwrap(), 8192);
    assert_eq!(file.embedding_length().unwrap(), 576);
    assert_eq!(
        file.feed_forward_length().unwrap(),
        Some(PerLayerValue::Uniform(1536))
    );
    assert_eq!(file.head_count().unwrap(), Some(PerLayerValue::Uniform(9)));
    assert_eq!(
        file.head_count_kv().unwrap(),
        Some(PerLayerValue::Uniform(3))
    );
    // No key_length key: 576 / 9 heads.
    assert_eq!(file.key_length().unwrap(), Some(64));
    assert_eq!(file.value_length().unwrap(), Some(64));
    assert_eq!(file.sliding_window().unwrap(), None);
    assert_eq!(file.sliding_window_attention().unwrap(), None);
    assert_eq!(file.expert_count().unwrap(), None);
    assert_eq!(file.expert_used_count().unwrap(), None);
    assert_eq!(file.file_type().unwrap(), Some(3));
    assert_eq!(file_type_name(3), Some("Q4_1"));
    assert_eq!(file.vocab_size().unwrap(), Some(49152));
    assert_eq!(file.get_u64("llama.vocab_size").unwrap(), Some(49152));
    let template = file.chat_template().unwrap().expect("chat template");
    assert!(template.contains("<|im_start|>") && template.contains("<|im_end|>"));
    assert_eq!(template.len(), 368);
    let merges = file.get_array("tokenizer.ggml.merges").unwrap().unwrap();
    assert_eq!(merges.len(), 48900);
    assert_eq!(merges.as_strings().unwrap().get(0), Some("Ġ t"));

    assert_eq!(file.parameter_count(), 134_515_008);
    assert_eq!(file.total_tensor_bytes(), 96_576_768);
    assert_eq!(file.tensor_infos_end(), 1_785_664);
    assert_eq!(file.data_offset(), 1_785_664);
    assert_eq!(
        type_histogram(&file),
        BTreeMap::from([
            (GgmlType::F32, 61),
            (GgmlType::Q4_1, 210),
            (GgmlType::Q8_0, 1)
        ])
    );
    let embedding = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embedding.dimensions, [576, 49152]);
    assert_eq!(embedding.ggml_type, GgmlType::Q8_0);
    assert_eq!(embedding.offset, 0);
    assert_eq!(embedding.byte_size, 30_081_024);
}

#[test]
fn gemma3_facts() {
    // Gemma's 262,144-token vocabulary makes a 6.2 MiB header.
    let file = parse_every_way(GEMMA3_FILE, 7 * MEBIBYTE);
    assert_eq!(file.version(), 3);
    assert_eq!(file.metadata().len(), 33);
    assert_eq!(file.tensors().len(), 236);
    assert_eq!(file.architecture().unwrap(), "gemma3");
    assert_eq!(file.block_count().unwrap(), 18);
    assert_eq!(file.context_length().unwrap(), 32768);
    assert_eq!(file.embedding_length().unwrap(), 640);
    assert_eq!(
        file.feed_forward_length().unwrap(),
        Some(PerLayerValue::Uniform(2048))
    );
    assert_eq!(file.head_count().unwrap(), Some(PerLayerValue::Uniform(4)));
    assert_eq!(
        file.head_count_kv().unwrap(),
        Some(PerLayerValue::Uniform(1))
    );
    // Stored explicitly: wider than 640 / 4.
    assert_eq!(file.key_length().unwrap(), Some(256));
    assert_eq!(file.value_length().unwrap(), Some(256));
    assert_eq!(file.sliding_window().unwrap(), Some(512));
    let sliding = file
        .sliding_window_attention()
        .unwrap()
        .expect("gemma3 slides");
    assert_eq!(sliding.window_length, 512);
    let global_layers: Vec<usize> = sliding
        .layer_uses_sliding_window
        .iter()
        .enumerate()
        .filter(|(_, slides)| !**slides)
        .map(|(layer, _)| layer)
        .collect();
    assert_eq!(sliding.layer_uses_sliding_window.len(), 18);
    assert_eq!(global_layers, [5, 11, 17]);
    assert_eq!(file.expert_count().unwrap(), None);
    assert_eq!(file.file_type().unwrap(), Some(15));
    assert_eq!(file_type_name(15), Some("Q4_K_M"));
    assert_eq!(
        file.chat_template().unwrap(),
        None,
        "the base model has no template"
    );
    assert_eq!(file.vocab_size().unwrap(), Some(262_144));
    let scores = file.get_array("tokenizer.ggml.scores").unwrap().unwrap();
    assert_eq!(scores.len(), 262_144);

    assert_eq!(file.parameter_count(), 268_098_176);
    assert_eq!(file.total_tensor_bytes(), 246_587_904);
    assert_eq!(file.tensor_infos_end(), 6_525_112);
    assert_eq!(file.data_offset(), 6_525_120);
    assert_eq!(
        type_histogram(&file),
        BTreeMap::from([
            (GgmlType::F32, 109),
            (GgmlType::Q5_0, 81),
            (GgmlType::Q8_0, 10),
            (GgmlType::Q4K, 27),
            (GgmlType::Q6K, 9),
        ])
    );
}

#[test]
fn remote_style_fetching_converges() {
    // Both headers are longer than the first 1 MiB fetch (SmolLM2 1.7 MiB, Gemma 6.2 MiB).
    let (smollm2, fetches) = fetch_until_parsed(SMOLLM2_FILE, MEBIBYTE);
    assert_eq!(smollm2.tensors().len(), 272);
    assert_eq!(fetches, 2);
    let (gemma3, fetches) = fetch_until_parsed(GEMMA3_FILE, MEBIBYTE);
    assert_eq!(gemma3.vocab_size().unwrap(), Some(262_144));
    assert_eq!(fetches, 4);
}

#[test]
fn short_prefixes_ask_for_more() {
    for (file_name, prefix_length) in [(SMOLLM2_FILE, MEBIBYTE), (GEMMA3_FILE, 4 * MEBIBYTE)] {
        let prefix = read_prefix(file_name, prefix_length);
        let error = GgufFile::parse_prefix(&prefix, Some(file_length(file_name))).unwrap_err();
        let needed = error.needed_bytes().unwrap_or_else(|| panic!("{error}"));
        assert!(needed > prefix_length as u64, "{file_name}: {error}");
        // Cut short as a whole file, the same bytes are a broken file.
        let error = GgufFile::parse(&prefix).unwrap_err();
        assert!(!error.is_truncated(), "{error}");
    }
}
