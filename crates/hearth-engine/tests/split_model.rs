//! A split model (`NAME-00001-of-00003.gguf`, written here from SmolLM2 with
//! `hearth_gguf::split::split_gguf`, as llama.cpp's `gguf-split` would) loads from its first
//! part, llama.cpp finding the others beside it, and answers exactly as the whole file does.

mod common;

use common::{chat, greedy_request, TestEngine};
use hearth_gguf::split::{split_gguf, SplitName};
use hearth_protocol::LoadParams;

fn answer(model: &std::path::Path) -> String {
    let (mut engine, _) = TestEngine::with_model(model, LoadParams::default());
    let id = engine.submit_request(greedy_request(chat("What is the capital of France?"), 16));
    let outcome = engine.collect(id);
    outcome.done();
    outcome.text()
}

#[test]
fn a_split_model_loads_from_its_first_part_and_answers_as_the_whole_file() {
    let whole = hearth_testkit::smollm2();
    let bytes = std::fs::read(&whole).unwrap();
    let parts = split_gguf(&bytes, 3).unwrap();
    let folder = tempfile::tempdir().unwrap();
    let name = SplitName {
        prefix: "smollm2".into(),
        index: 1,
        count: 3,
    };
    for (index, part) in parts.iter().enumerate() {
        std::fs::write(
            folder.path().join(name.part_file_name(index as u32 + 1)),
            part,
        )
        .unwrap();
    }
    let first = folder.path().join(name.part_file_name(1));
    let split_answer = answer(&first);
    assert!(!split_answer.is_empty());
    assert_eq!(split_answer, answer(&whole), "greedy answers agree");
}
