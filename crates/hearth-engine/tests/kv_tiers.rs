//! The KV cache's tiers on the real SmolLM2 model: a conversation pushed out of its only slot
//! by another comes back from host memory, from disk, and from disk after the engine was
//! restarted, each time computing only its new turn and answering exactly as a fresh
//! computation does; a disk file that is corrupt, truncated or made for other context
//! parameters is not used (the prompt is computed fresh, the answer unchanged). The same on
//! Gemma 3 270M, a sliding-window model: its own slot, host memory, disk and a restart.

mod common;

use std::path::Path;

use common::TestEngine;
use hearth_protocol::{CacheTier, ChatMessage, LoadParams, Prompt, RequestMetrics, Role};

const ANSWER_TOKENS: u32 = 12;

fn engine(params: LoadParams) -> TestEngine {
    engine_of(&hearth_testkit::smollm2(), params)
}

fn engine_of(model: &Path, params: LoadParams) -> TestEngine {
    TestEngine::with_model(model, params).0
}

/// One slot, so a second conversation always pushes the first out of it.
fn one_slot(host_budget: u64, disk: Option<&Path>) -> LoadParams {
    LoadParams {
        n_parallel: 1,
        n_ctx: 2048,
        kv_host_budget_bytes: Some(host_budget),
        kv_disk_dir: disk.map(Path::to_path_buf),
        ..LoadParams::default()
    }
}

fn conversation(system: &str, turns: usize) -> Vec<ChatMessage> {
    let mut messages = vec![ChatMessage::new(Role::System, system)];
    for turn in 1..=turns {
        messages.push(ChatMessage::new(
            Role::User,
            format!("This is turn {turn}. Tell me one short fact about the number {turn}, and explain it to a child who likes boats."),
        ));
        if turn < turns {
            messages.push(ChatMessage::new(
                Role::Assistant,
                format!(
                    "Here is a short fact about the number {turn}: it comes after {}.",
                    turn - 1
                ),
            ));
        }
    }
    messages
}

fn a(turns: usize) -> Vec<ChatMessage> {
    conversation(
        "You are a ship's cook who answers every question in one sentence.",
        turns,
    )
}

fn b(turns: usize) -> Vec<ChatMessage> {
    conversation(
        "You are a lighthouse keeper who writes short notes about the weather.",
        turns,
    )
}

fn ask(engine: &mut TestEngine, messages: &[ChatMessage]) -> (String, RequestMetrics) {
    let outcome = engine.generate(
        Prompt::Chat {
            messages: messages.to_vec(),
        },
        hearth_protocol::SamplingParams::greedy(),
        Some(ANSWER_TOKENS),
        &[],
    );
    (outcome.text(), outcome.done().1.clone())
}

/// The answer with nothing cached.
fn fresh(messages: &[ChatMessage]) -> String {
    fresh_of(&hearth_testkit::smollm2(), messages)
}

fn fresh_of(model: &Path, messages: &[ChatMessage]) -> String {
    let mut engine = engine_of(
        model,
        LoadParams {
            prefix_cache: false,
            ..one_slot(0, None)
        },
    );
    ask(&mut engine, messages).0
}

fn assert_served(metrics: &RequestMetrics, tier: CacheTier) {
    assert_eq!(metrics.prompt_cache_tier, tier, "{metrics:?}");
    let computed = metrics.prompt_tokens - metrics.cached_prompt_tokens;
    assert!(
        computed * 2 < metrics.prompt_tokens,
        "computed {computed} of {} prompt tokens",
        metrics.prompt_tokens
    );
}

fn kv_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "kv"))
        .collect()
}

#[test]
fn a_conversation_pushed_out_of_its_slot_comes_back_from_host_memory() {
    let mut engine = engine(one_slot(64 << 20, None));
    ask(&mut engine, &a(3));
    ask(&mut engine, &b(3));
    let (answer, metrics) = ask(&mut engine, &a(4));
    assert_served(&metrics, CacheTier::Ram);
    assert_eq!(answer, fresh(&a(4)));
    // And the other one, pushed out in turn.
    let (answer, metrics) = ask(&mut engine, &b(4));
    assert_served(&metrics, CacheTier::Ram);
    assert_eq!(answer, fresh(&b(4)));
}

#[test]
fn with_no_host_memory_it_comes_back_from_disk_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = engine(one_slot(0, Some(dir.path())));
    ask(&mut first, &a(3));
    ask(&mut first, &b(3));
    let (answer, metrics) = ask(&mut first, &a(4));
    assert_served(&metrics, CacheTier::Disk);
    assert_eq!(answer, fresh(&a(4)));
    // A restart: the session's slot is saved when it ends.
    drop(first);
    #[cfg(unix)]
    for file in kv_files(dir.path()) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    let mut second = engine(one_slot(0, Some(dir.path())));
    let (answer, metrics) = ask(&mut second, &a(5));
    assert_served(&metrics, CacheTier::Disk);
    assert_eq!(answer, fresh(&a(5)));
}

/// A conversation whose prompt is longer than Gemma 3's 512-token window, so its answers
/// depend on the window being applied to restored positions as it was to computed ones.
fn beyond_the_window(system: &str, turns: usize) -> Vec<ChatMessage> {
    let notes: String = (1..=36)
        .map(|note| {
            format!(
                "Note {note}: the crate on shelf {note} holds {} jars. ",
                note * 3
            )
        })
        .collect();
    conversation(&format!("{system} {notes}"), turns)
}

#[test]
fn a_sliding_window_model_reuses_its_slot_and_every_tier_with_identical_answers() {
    let gemma = hearth_testkit::gemma3();
    let long_a = |turns| beyond_the_window("You are a ship's cook.", turns);
    let long_b = |turns| beyond_the_window("You are a lighthouse keeper.", turns);
    let dir = tempfile::tempdir().unwrap();
    // Host memory for one pushed-out conversation, then disk.
    let mut first = engine_of(&gemma, one_slot(64 << 20, Some(dir.path())));
    let (_, metrics) = ask(&mut first, &long_a(3));
    assert!(metrics.prompt_tokens > 512 + 100, "{metrics:?}");
    let (answer, metrics) = ask(&mut first, &long_a(4));
    assert_served(&metrics, CacheTier::Slot);
    assert_eq!(answer, fresh_of(&gemma, &long_a(4)));
    ask(&mut first, &long_b(3));
    let (answer, metrics) = ask(&mut first, &long_a(5));
    assert_served(&metrics, CacheTier::Ram);
    assert_eq!(answer, fresh_of(&gemma, &long_a(5)));
    drop(first);
    // No host memory: B comes back from disk, after a restart.
    let mut second = engine_of(&gemma, one_slot(0, Some(dir.path())));
    let (answer, metrics) = ask(&mut second, &long_b(4));
    assert_served(&metrics, CacheTier::Disk);
    assert_eq!(answer, fresh_of(&gemma, &long_b(4)));
}

/// Saves conversation A's third turn to a fresh folder, damages its files with `damage`, and
/// checks that an engine loaded with `params` then computes A's fourth turn fresh, answering
/// as a fresh computation does.
fn damaged_files_are_not_used(damage: impl Fn(&Path), params: impl Fn(&Path) -> LoadParams) {
    let dir = tempfile::tempdir().unwrap();
    ask(&mut engine(one_slot(0, Some(dir.path()))), &a(3));
    assert!(
        !kv_files(dir.path()).is_empty(),
        "the session saved its slot"
    );
    damage(dir.path());
    let mut after = engine(params(dir.path()));
    let (answer, metrics) = ask(&mut after, &a(4));
    assert_eq!(metrics.prompt_cache_tier, CacheTier::None, "{metrics:?}");
    assert_eq!(answer, fresh(&a(4)));
}

/// Rewrites every cache file of the folder with `change`.
fn rewrite_files(dir: &Path, change: impl Fn(&mut Vec<u8>)) {
    for file in kv_files(dir) {
        let mut bytes = std::fs::read(&file).unwrap();
        change(&mut bytes);
        std::fs::write(&file, bytes).unwrap();
    }
}

#[test]
fn a_corrupt_file_is_not_used() {
    let flip_a_state_byte = |dir: &Path| {
        rewrite_files(dir, |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
        })
    };
    damaged_files_are_not_used(flip_a_state_byte, |dir| one_slot(0, Some(dir)));
}

#[test]
fn a_truncated_file_is_not_used() {
    let cut = |dir: &Path| rewrite_files(dir, |bytes| bytes.truncate(bytes.len() - 100));
    damaged_files_are_not_used(cut, |dir| one_slot(0, Some(dir)));
}

#[test]
fn a_file_made_for_another_context_is_not_used() {
    let other_context = |dir: &Path| LoadParams {
        n_ctx: 1024,
        ..one_slot(0, Some(dir))
    };
    damaged_files_are_not_used(|_| {}, other_context);
}
