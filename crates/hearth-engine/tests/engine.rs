//! The engine in-process, on the real SmolLM2 model (and Gemma 3 for another architecture):
//! templates, determinism, sampling, stop strings, UTF-8 streaming, metrics, cancellation and
//! load errors.

mod common;

use std::time::{Duration, Instant};

use common::{chat, TestEngine};
use hearth_protocol::{
    ChatMessage, ErrorKind, FinishReason, LoadParams, Prompt, Role, SamplingParams, TemplateSource,
    WorkerEvent, WorkerRequest,
};

fn smollm2_engine() -> TestEngine {
    TestEngine::with_model(&hearth_testkit::smollm2(), LoadParams::default()).0
}

#[test]
fn smollm2_prompt_is_exactly_its_chatml_template() {
    let mut engine = smollm2_engine();
    let (text, source, tokens) = engine.render(vec![
        ChatMessage::new(Role::System, "You are helpful."),
        ChatMessage::new(Role::User, "Hello!"),
        ChatMessage::new(Role::Assistant, "Hi there."),
        ChatMessage::new(Role::User, "What is 2+2?"),
    ]);
    assert_eq!(source, TemplateSource::Builtin);
    assert_eq!(
        text,
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n\
         <|im_start|>assistant\nHi there.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    assert!(
        tokens > 20,
        "special tokens are parsed, the rest tokenized: {tokens}"
    );
}

/// The header of the SmolLM2 file (its metadata, template included) lies in its first bytes.
const SMOLLM2_HEADER_BYTES: usize = 4 * 1024 * 1024;

#[test]
fn a_model_without_a_template_falls_back_to_chatml_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("no-template.gguf");
    let renamed = hearth_testkit::craft::with_bytes_replaced(
        &hearth_testkit::smollm2(),
        &model,
        "tokenizer.chat_template",
        "tokenizer.chat_templatX",
        SMOLLM2_HEADER_BYTES,
    )
    .unwrap();
    assert_eq!(renamed, 1);
    let (mut engine, info) = TestEngine::with_model(&model, LoadParams::default());
    assert_eq!(info.template_source, TemplateSource::FallbackChatml);
    let (text, source, _) = engine.render(vec![ChatMessage::new(Role::User, "Hi")]);
    assert_eq!(source, TemplateSource::FallbackChatml);
    assert_eq!(
        text,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn a_template_llama_cpp_does_not_know_is_rendered_by_the_jinja_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("custom-template.gguf");
    // Same length as "<|im_start|>", unknown to llama.cpp's template detection.
    let changed = hearth_testkit::craft::with_bytes_replaced(
        &hearth_testkit::smollm2(),
        &model,
        "'<|im_start|>",
        "'<|turn_from|",
        SMOLLM2_HEADER_BYTES,
    )
    .unwrap();
    assert!(changed >= 1);
    let (mut engine, info) = TestEngine::with_model(&model, LoadParams::default());
    assert_eq!(info.template_source, TemplateSource::Jinja);
    let (text, source, _) = engine.render(vec![
        ChatMessage::new(Role::System, "Be brief."),
        ChatMessage::new(Role::User, "Hi"),
    ]);
    assert_eq!(source, TemplateSource::Jinja);
    assert_eq!(
        text,
        "<|turn_from|system\nBe brief.<|im_end|>\n<|turn_from|user\nHi<|im_end|>\n<|turn_from|assistant\n"
    );
    let outcome = engine.generate(chat("Hi"), SamplingParams::greedy(), Some(4), &[]);
    assert_eq!(outcome.done().1.generated_tokens, 4);
}

#[test]
fn greedy_output_is_deterministic_and_sensible() {
    let mut engine = smollm2_engine();
    let first = engine.generate(
        chat("What is the capital of France?"),
        SamplingParams::greedy(),
        Some(24),
        &[],
    );
    let second = engine.generate(
        chat("What is the capital of France?"),
        SamplingParams::greedy(),
        Some(24),
        &[],
    );
    assert_eq!(first.text(), second.text());
    assert!(first.text().contains("Paris"), "{}", first.text());
    assert_eq!(
        first.done().0,
        FinishReason::Stop,
        "the answer ends with an end-of-generation token"
    );
}

#[test]
fn the_same_seed_gives_the_same_sample() {
    let mut engine = smollm2_engine();
    let sampling = |seed| SamplingParams {
        temperature: 1.0,
        seed: Some(seed),
        ..SamplingParams::default()
    };
    let prompt = || chat("Write a sentence about the sea.");
    let a = engine
        .generate(prompt(), sampling(42), Some(32), &[])
        .text();
    let b = engine
        .generate(prompt(), sampling(42), Some(32), &[])
        .text();
    assert_eq!(a, b, "same seed, same text");
    let others: Vec<String> = (1..=3)
        .map(|seed| {
            engine
                .generate(prompt(), sampling(seed), Some(32), &[])
                .text()
        })
        .collect();
    assert!(
        others.iter().any(|text| *text != a),
        "other seeds sample other text"
    );
}

#[test]
fn max_tokens_and_stop_strings_hold() {
    let mut engine = smollm2_engine();
    let prompt = || chat("Count from one to twenty in words, separated by commas.");
    let limited = engine.generate(prompt(), SamplingParams::greedy(), Some(7), &[]);
    let (reason, metrics) = limited.done();
    assert_eq!(reason, FinishReason::Length);
    assert_eq!(metrics.generated_tokens, 7);

    let full = engine
        .generate(prompt(), SamplingParams::greedy(), Some(60), &[])
        .text();
    // A stop string that spans several tokens, taken from the middle of the real answer.
    let middle = (full.len() / 2..full.len())
        .find(|i| full.is_char_boundary(*i))
        .unwrap();
    let end = (middle + 7..full.len())
        .find(|i| full.is_char_boundary(*i))
        .unwrap();
    let stop = &full[middle..end];
    let stop_at = full.find(stop).unwrap();
    assert!(stop_at > 0, "answer: {full:?}");
    let stopped = engine.generate(prompt(), SamplingParams::greedy(), Some(60), &[stop]);
    assert_eq!(stopped.done().0, FinishReason::Stop);
    assert_eq!(
        stopped.text(),
        full[..stop_at],
        "output is everything before the stop string"
    );
    for piece in &stopped.pieces {
        assert!(
            !piece.contains("four"),
            "the stop string never leaks: {piece:?}"
        );
    }
}

#[test]
fn emoji_and_cjk_stream_without_replacement_characters() {
    let mut engine = smollm2_engine();
    let emoji = engine.generate(
        chat("Reply with only emoji: happy birthday"),
        SamplingParams::greedy(),
        Some(24),
        &[],
    );
    let cjk = engine.generate(
        Prompt::Text {
            text: "日本語の文章: 東京は日本の首都です。大阪は".into(),
        },
        SamplingParams::greedy(),
        Some(24),
        &[],
    );
    for outcome in [&emoji, &cjk] {
        let text = outcome.text();
        assert!(
            text.chars().any(|c| c.len_utf8() > 1),
            "multi-byte output expected: {text:?}"
        );
        for piece in &outcome.pieces {
            assert!(!piece.contains('\u{FFFD}'), "piece {piece:?} of {text:?}");
        }
    }
    assert!(
        emoji.text().chars().any(|c| c.len_utf8() == 4),
        "{:?}",
        emoji.text()
    );
}

#[test]
fn metrics_are_present_and_consistent() {
    let mut engine = smollm2_engine();
    let outcome = engine.generate(
        chat("Tell me about the moon."),
        SamplingParams::greedy(),
        Some(20),
        &[],
    );
    let (_, metrics) = outcome.done();
    assert!(metrics.prompt_tokens > 5);
    assert_eq!(metrics.generated_tokens, 20);
    assert_eq!(
        metrics.itl_ms.len() as u32,
        metrics.generated_tokens - 1,
        "ITL count = generated - 1"
    );
    assert!(metrics.ttft_ms > 0.0 && metrics.ttft_ms <= metrics.e2e_ms);
    assert!(
        metrics.tpot_ms > 0.0
            && metrics.prefill_tokens_per_s > 0.0
            && metrics.decode_tokens_per_s > 0.0
    );
    assert!(metrics.itl_p50_ms <= metrics.itl_p95_ms && metrics.itl_p95_ms <= metrics.itl_max_ms);
    // The intervals add up to the decode time exactly; the first token, the decode time and
    // the tail after the last token (flushing held text, sending Done) add up to e2e. The
    // tail is bounded loosely: a shared CI machine can pause the thread for milliseconds.
    let decode_ms: f64 = metrics.itl_ms.iter().sum();
    assert!(
        (metrics.tpot_ms * f64::from(metrics.generated_tokens - 1) - decode_ms).abs() < 1e-6,
        "{metrics:?}"
    );
    let tail_ms = metrics.e2e_ms - (metrics.ttft_ms + decode_ms);
    assert!(
        (-1e-6..250.0).contains(&tail_ms),
        "tail {tail_ms} ms: {metrics:?}"
    );
}

#[test]
fn cancelling_mid_stream_returns_promptly() {
    let mut engine = smollm2_engine();
    let id = engine.submit(
        chat("Write a long story about a dragon."),
        SamplingParams::greedy(),
        Some(2000),
        &[],
    );
    let mut tokens = 0;
    while tokens < 5 {
        if let WorkerEvent::Token { .. } = engine.next_event() {
            tokens += 1;
        }
    }
    let cancelled_at = Instant::now();
    engine
        .engine
        .submit(WorkerRequest::Cancel { request_id: id });
    let outcome = engine.collect(id);
    assert_eq!(outcome.done().0, FinishReason::Cancelled);
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(2),
        "took {:?}",
        cancelled_at.elapsed()
    );
    // The engine goes on serving.
    let next = engine.generate(chat("Hi"), SamplingParams::greedy(), Some(4), &[]);
    assert_eq!(next.done().1.generated_tokens, 4);
}

#[test]
fn a_follow_up_turn_reuses_the_cached_prefix() {
    let mut engine = smollm2_engine();
    let mut messages = vec![ChatMessage::new(Role::User, "Name a fruit.")];
    let first = engine.generate(
        Prompt::Chat {
            messages: messages.clone(),
        },
        SamplingParams::greedy(),
        Some(16),
        &[],
    );
    messages.push(ChatMessage::new(Role::Assistant, first.text()));
    messages.push(ChatMessage::new(Role::User, "And a vegetable?"));
    let second = engine.generate(
        Prompt::Chat { messages },
        SamplingParams::greedy(),
        Some(8),
        &[],
    );
    let metrics = second.done().1;
    assert!(metrics.cached_prompt_tokens > 10, "{metrics:?}");
}

#[test]
fn gemma3_loads_and_generates_deterministically() {
    let (mut engine, info) = TestEngine::with_model(
        &hearth_testkit::gemma3(),
        LoadParams {
            n_ctx: 1024,
            ..LoadParams::default()
        },
    );
    assert_eq!(info.architecture, "gemma3");
    let prompt = || Prompt::Text {
        text: "The three primary colours are".into(),
    };
    let a = engine.generate(prompt(), SamplingParams::greedy(), Some(12), &[]);
    let b = engine.generate(prompt(), SamplingParams::greedy(), Some(12), &[]);
    assert_eq!(a.done().1.generated_tokens, 12);
    assert_eq!(
        a.text(),
        b.text(),
        "same output with and without the sliding-window cache reused"
    );
}

#[test]
fn bad_files_are_typed_errors_and_the_engine_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = TestEngine::start();
    let missing = engine
        .load(&dir.path().join("nope.gguf"), LoadParams::default())
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::FileMissing);
    assert!(missing.message.contains("nope.gguf"));

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "this is not a model\n").unwrap();
    assert_eq!(
        engine.load(&text, LoadParams::default()).unwrap_err().kind,
        ErrorKind::NotGguf
    );

    let truncated = dir.path().join("truncated.gguf");
    hearth_testkit::craft::truncated(&hearth_testkit::smollm2(), &truncated, 1_000_000).unwrap();
    let error = engine.load(&truncated, LoadParams::default()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::LoadFailed, "{error:?}");
    assert!(
        error.message.contains("truncated.gguf"),
        "{}",
        error.message
    );
    assert!(
        !error.message.contains(dir.path().to_str().unwrap()),
        "no full paths: {}",
        error.message
    );

    let before_load = engine.generate(chat("Hi"), SamplingParams::greedy(), Some(2), &[]);
    assert_eq!(
        before_load.result.unwrap_err().kind,
        ErrorKind::NoModelLoaded
    );

    engine
        .load(&hearth_testkit::smollm2(), LoadParams::default())
        .unwrap();
    let outcome = engine.generate(chat("Hi"), SamplingParams::greedy(), Some(3), &[]);
    assert_eq!(outcome.done().1.generated_tokens, 3);
}

#[test]
fn an_unknown_architecture_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = TestEngine::start();
    // "llama" renamed to an architecture llama.cpp does not know (same length, same offsets).
    let unknown = dir.path().join("unknown-arch.gguf");
    hearth_testkit::craft::with_bytes_replaced(
        &hearth_testkit::smollm2(),
        &unknown,
        "\x05\0\0\0\0\0\0\0llama",
        "\x05\0\0\0\0\0\0\0qwzzy",
        64 * 1024,
    )
    .unwrap();
    let error = engine.load(&unknown, LoadParams::default()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::UnsupportedArchitecture, "{error:?}");
    assert!(error.message.contains("qwzzy"), "{}", error.message);

    engine
        .load(&hearth_testkit::smollm2(), LoadParams::default())
        .unwrap();
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_with_counts() {
    let (mut engine, info) = TestEngine::with_model(
        &hearth_testkit::smollm2(),
        LoadParams {
            n_ctx: 256,
            ..LoadParams::default()
        },
    );
    let n_ctx = info.n_ctx_per_sequence;
    let long = "word ".repeat(n_ctx as usize + 10);
    let outcome = engine.generate(
        Prompt::Text { text: long },
        SamplingParams::greedy(),
        Some(4),
        &[],
    );
    let error = outcome.result.unwrap_err();
    assert_eq!(error.kind, ErrorKind::ContextLengthExceeded);
    assert_eq!(error.n_ctx, Some(n_ctx));
    assert!(error.prompt_tokens.unwrap() > n_ctx);
    // A generation that reaches the end of the context stops with "length", never loops.
    let outcome = engine.generate(
        Prompt::Text {
            text: "word ".repeat(n_ctx as usize - 20),
        },
        SamplingParams::greedy(),
        None,
        &[],
    );
    let (reason, metrics) = outcome.done();
    assert_eq!(reason, FinishReason::Length);
    assert!(
        metrics.prompt_tokens + metrics.generated_tokens <= n_ctx + 1,
        "{metrics:?}"
    );
}

#[test]
fn invalid_sampling_values_are_rejected_by_name() {
    let mut engine = smollm2_engine();
    let sampling = SamplingParams {
        temperature: f32::NAN,
        ..SamplingParams::default()
    };
    let error = engine
        .generate(chat("Hi"), sampling, Some(2), &[])
        .result
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(error.message.contains("temperature"));
}
