//! Hostile requests on the real SmolLM2 model (issue 15): output constraints that stalled or
//! aborted the engine, grammars at the limits of what is accepted, and chats with more
//! messages than any context holds. Each gets an error (or its answer) quickly, and a greedy
//! stream running beside them finishes with the same text as alone.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{chat, greedy_request, TestEngine};
use hearth_engine::constraint::MAX_GRAMMAR_BYTES;
use hearth_protocol::{
    ChatMessage, ContextOverflow, ErrorKind, FinishReason, GenerateRequest, LoadParams,
    OutputConstraint, Prompt, Role, TemplateSource, WorkerError, WorkerEvent, MAX_CHAT_MESSAGES,
};
use serde_json::{json, Value};

fn engine(params: LoadParams) -> TestEngine {
    TestEngine::with_model(&hearth_testkit::smollm2(), params).0
}

/// An object schema with `count` optional string properties (the issue's hostile schemas:
/// 2,000 held the engine for 15 s, 5,000 aborted the worker).
fn optional_properties(count: usize) -> Value {
    let properties: serde_json::Map<String, Value> = (0..count)
        .map(|i| (format!("field_{i}"), json!({"type": "string"})))
        .collect();
    json!({"type": "object", "properties": properties})
}

/// Within every bound (about 230 values, 11 KB) and cheap to start, yet accepting its second
/// `[` multiplies two nested choices in llama.cpp's grammar: measured 1.7 s at 30 ways, 116 s
/// at 60, on the thread that sampled for every stream before.
fn nested_choices(ways: usize) -> Value {
    let outer: Vec<Value> = (0..ways)
        .map(|i| json!({"type": "array", "prefixItems": [{"$ref": "#/$defs/inner"}, {"const": i}]}))
        .collect();
    let inner: Vec<Value> = (0..ways)
        .map(|i| json!({"type": "array", "prefixItems": [{"$ref": "#/$defs/leaf"}, {"const": i}]}))
        .collect();
    json!({"anyOf": outer, "$defs": {"inner": {"anyOf": inner}, "leaf": {"enum": (0..ways).collect::<Vec<_>>()}}})
}

fn constrained(constraint: OutputConstraint, max_tokens: u32) -> GenerateRequest {
    let mut request = greedy_request(chat("Give me the data as JSON."), max_tokens);
    request.constraint = Some(constraint);
    request
}

fn story() -> GenerateRequest {
    let mut request = greedy_request(chat("Write a long story about a dragon."), 160);
    request.ignore_eos = true;
    request
}

#[test]
fn hostile_constraints_beside_a_greedy_stream_get_errors_and_the_stream_is_unchanged() {
    let mut engine = engine(LoadParams {
        n_parallel: 4,
        n_ctx: 4 * 1024,
        ..LoadParams::default()
    });
    let alone_id = engine.submit_request(story());
    let alone = engine.collect(alone_id);
    assert_eq!(alone.done().0, FinishReason::Length);

    let stream = engine.submit_request(story());
    let mut pieces = Vec::new();
    while pieces.len() < 4 {
        match engine.next_event() {
            WorkerEvent::Token { text, .. } => pieces.push(text),
            WorkerEvent::Started { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let alternatives = (0..20_000)
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(" | ");
    let hostile = [
        (
            "2,000 optional properties",
            OutputConstraint::JsonSchema {
                schema: optional_properties(2000),
            },
            &["2000 properties"][..],
        ),
        (
            "5,000 optional properties",
            OutputConstraint::JsonSchema {
                schema: optional_properties(5000),
            },
            &["5000 properties"][..],
        ),
        // Refused by the cost probe (about 2.8 s a token on a 2-core CPU), or by the build's
        // deadline on a busy one.
        (
            "a grammar of 20,000 alternatives",
            OutputConstraint::Grammar {
                gbnf: format!("root ::= {alternatives}\n"),
            },
            &["would take about", "took longer than 2 s"][..],
        ),
        // Cheap to start: fails at its first expensive token (seconds), on its own thread.
        (
            "nested 34-way choices",
            OutputConstraint::JsonSchema {
                schema: nested_choices(34),
            },
            &["took more than", "would take about"][..],
        ),
    ];
    let submitted_at = Instant::now();
    let ids: Vec<u64> = hostile
        .iter()
        .map(|(_, constraint, _)| engine.submit_request(constrained(constraint.clone(), 16)))
        .collect();
    let mut errors: Vec<Option<(WorkerError, Duration)>> = vec![None; ids.len()];
    let mut stream_tokens_while_pending = 0;
    let stream_metrics = loop {
        match engine.next_event() {
            WorkerEvent::Token {
                request_id, text, ..
            } if request_id == stream => {
                pieces.push(text);
                if errors.iter().any(Option::is_none) {
                    stream_tokens_while_pending += 1;
                }
            }
            WorkerEvent::Done {
                request_id,
                finish_reason,
                metrics,
                ..
            } if request_id == stream => {
                assert_eq!(finish_reason, FinishReason::Length);
                break metrics;
            }
            WorkerEvent::Error {
                request_id: Some(id),
                error,
            } => {
                let which = ids
                    .iter()
                    .position(|i| *i == id)
                    .expect("a hostile request");
                errors[which] = Some((error, submitted_at.elapsed()));
            }
            WorkerEvent::Started { request_id, .. } | WorkerEvent::Token { request_id, .. }
                if ids.contains(&request_id) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    for ((name, _, expected), outcome) in hostile.iter().zip(&errors) {
        let (error, after) = outcome
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no error before the stream ended"));
        assert_eq!(
            error.kind,
            ErrorKind::InvalidConstraint,
            "{name}: {error:?}"
        );
        assert!(
            expected.iter().any(|text| error.message.contains(text)),
            "{name}: {}",
            error.message
        );
        println!(
            "{name}: refused after {} ms: {}",
            after.as_millis(),
            error.message
        );
    }
    assert_eq!(pieces.concat(), alone.text(), "the stream's text changed");
    // The engine kept stepping while the grammars were built and sampled elsewhere: before,
    // one of them alone held it for seconds.
    println!(
        "stream: {stream_tokens_while_pending} tokens while hostile requests were pending, \
         ITL max {:.0} ms (alone {:.0} ms)",
        stream_metrics.itl_max_ms,
        alone.done().1.itl_max_ms
    );
    // Relative to the stream alone: on a shared, busy CPU every step can take seconds.
    let allowed = 1000.0 + 2.0 * alone.done().1.itl_max_ms.max(1000.0);
    assert!(
        stream_metrics.itl_max_ms < allowed,
        "the stream stalled for {:.0} ms",
        stream_metrics.itl_max_ms
    );

    // The engine still serves constrained requests.
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
                        "required": ["name"]});
    let id = engine.submit_request(constrained(OutputConstraint::JsonSchema { schema }, 24));
    let outcome = engine.collect(id);
    outcome.done();
    assert!(outcome.text().starts_with('{'), "{}", outcome.text());
}

#[test]
fn grammars_that_allow_no_token_or_nest_to_the_cap_end_in_answers_or_errors() {
    let mut engine = engine(LoadParams {
        n_ctx: 1024,
        ..LoadParams::default()
    });
    // No character matches: llama.cpp would abort the process accepting any token.
    let id = engine.submit_request(constrained(
        OutputConstraint::Grammar {
            gbnf: r#"root ::= "{" [^\x00-\U0010FFFF]"#.into(),
        },
        8,
    ));
    let error = engine.collect(id).result.unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidConstraint, "{error:?}");
    // A schema with no valid string: an error too, whichever part finds it.
    let schema = json!({"type": "string", "minLength": 5, "maxLength": 2});
    let id = engine.submit_request(constrained(OutputConstraint::JsonSchema { schema }, 8));
    let outcome = engine.collect(id);
    assert!(
        matches!(&outcome.result, Err(error) if error.kind == ErrorKind::InvalidConstraint),
        "{outcome:?}"
    );
    // The deepest nesting that fits the size cap: parsed on a builder thread and entered on a
    // sampling thread (10,000 levels overflowed a default 2 MiB stack).
    let prefix = "root ::= \"a\" ";
    let depth = (MAX_GRAMMAR_BYTES - prefix.len() - 4) / 2;
    let gbnf = format!("{prefix}{}\"x\"{}", "(".repeat(depth), ")".repeat(depth));
    assert!(gbnf.len() <= MAX_GRAMMAR_BYTES);
    let id = engine.submit_request(constrained(OutputConstraint::Grammar { gbnf }, 4));
    let outcome = engine.collect(id);
    assert_eq!(outcome.text(), "ax", "{outcome:?}");
    // Still serving.
    let id = engine.submit_request(greedy_request(chat("Hi"), 3));
    engine.collect(id).done();
}

/// A constrained request that finds every grammar builder busy waits for one within a
/// deadline, then gets a clear "busy, retry" error instead of waiting for ever; the engine
/// serves on. No builder at all here, so the wait ends the same way on any CPU.
#[test]
fn a_constrained_request_with_no_free_grammar_builder_gets_an_error_at_its_deadline() {
    let wait = Duration::from_millis(300);
    let options = hearth_engine::EngineOptions {
        grammar: hearth_engine::constraint::GrammarLimits { builders: 0, wait },
        ..hearth_engine::EngineOptions::default()
    };
    let mut engine = TestEngine::start_with(options);
    engine
        .load(&hearth_testkit::smollm2(), LoadParams::default())
        .unwrap();
    let submitted = Instant::now();
    let id = engine.submit_request(constrained(OutputConstraint::JsonObject, 8));
    let error = engine.collect(id).result.unwrap_err();
    let waited = submitted.elapsed();
    assert_eq!(error.kind, ErrorKind::QueueFull, "{error:?}");
    assert!(
        error.message.contains("no grammar builder became free"),
        "{}",
        error.message
    );
    assert!(
        waited >= wait && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );
    let id = engine.submit_request(greedy_request(chat("Hi"), 3));
    engine.collect(id).done();
}

fn many_messages(count: usize) -> Vec<ChatMessage> {
    let mut messages = vec![ChatMessage::new(Role::System, "Answer briefly.")];
    messages.extend((1..count).map(|i| {
        let role = if i % 2 == 1 {
            Role::User
        } else {
            Role::Assistant
        };
        ChatMessage::new(role, format!("Message {i}: the weather is fine today."))
    }));
    messages
}

/// Submits a chat and returns its outcome, how long it took, and `dropped_messages`. With
/// `max_tokens` 0 the request ends once admitted: the time is the preparation's alone
/// (rendering, tokenizing, dropping turns), whatever the CPU's speed at decoding.
fn timed_chat(
    engine: &mut TestEngine,
    messages: Vec<ChatMessage>,
    overflow: ContextOverflow,
    max_tokens: u32,
) -> (Result<FinishReason, WorkerError>, Duration, u32) {
    let mut request = greedy_request(Prompt::Chat { messages }, max_tokens);
    request.context_overflow = overflow;
    let started = Instant::now();
    let id = engine.submit_request(request);
    let mut dropped = 0;
    loop {
        match engine.next_event() {
            WorkerEvent::Started {
                request_id,
                dropped_messages,
                ..
            } if request_id == id => dropped = dropped_messages,
            WorkerEvent::Token { request_id, .. } if request_id == id => {}
            WorkerEvent::Done {
                request_id,
                finish_reason,
                ..
            } if request_id == id => return (Ok(finish_reason), started.elapsed(), dropped),
            WorkerEvent::Error {
                request_id: Some(request_id),
                error,
            } if request_id == id => return (Err(error), started.elapsed(), dropped),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn chats_of_many_messages_are_answered_or_refused_within_seconds() {
    let mut engine = engine(LoadParams {
        n_ctx: 512,
        ..LoadParams::default()
    });
    // 100,000 messages: over the cap, refused before anything is rendered.
    let (outcome, took, _) = timed_chat(
        &mut engine,
        many_messages(100_000),
        ContextOverflow::DropOldestTurns,
        4,
    );
    let error = outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(error.message.contains("at most 10000"), "{}", error.message);
    println!("100,000 messages refused in {} ms", took.as_millis());
    assert!(took < Duration::from_secs(3), "{took:?}");

    // 10,000 messages (the cap): the oldest turns dropped in one pass.
    let (outcome, took, dropped) = timed_chat(
        &mut engine,
        many_messages(MAX_CHAT_MESSAGES),
        ContextOverflow::DropOldestTurns,
        0,
    );
    assert_eq!(outcome.unwrap(), FinishReason::Length);
    println!(
        "10,000 messages prepared in {} ms, {dropped} dropped",
        took.as_millis()
    );
    assert!(
        dropped as usize > MAX_CHAT_MESSAGES - 40 && (dropped as usize) < MAX_CHAT_MESSAGES - 2,
        "{dropped} dropped"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    // And answered.
    let (outcome, _, _) = timed_chat(
        &mut engine,
        many_messages(MAX_CHAT_MESSAGES),
        ContextOverflow::DropOldestTurns,
        4,
    );
    assert_ne!(outcome.unwrap(), FinishReason::Cancelled);

    // Without dropping: refused, without tokenizing 300 KB that cannot fit.
    let (outcome, took, _) = timed_chat(
        &mut engine,
        many_messages(MAX_CHAT_MESSAGES),
        ContextOverflow::Error,
        4,
    );
    assert_eq!(outcome.unwrap_err().kind, ErrorKind::ContextLengthExceeded);
    println!("10,000 messages refused in {} ms", took.as_millis());
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A 20 MB prompt is refused by its size (tokenizing it would hold the engine for seconds:
    // 10 MB took 2.9 s on a 2-core CPU).
    let started = Instant::now();
    let id = engine.submit_request(greedy_request(
        Prompt::Text {
            text: "The lighthouse keeper's log. ".repeat(700_000),
        },
        4,
    ));
    let error = engine.collect(id).result.unwrap_err();
    assert_eq!(error.kind, ErrorKind::ContextLengthExceeded);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The turns kept are the system message and the newest ones, and they fit whole.
    let messages = many_messages(400);
    let (outcome, _, dropped) = timed_chat(
        &mut engine,
        messages.clone(),
        ContextOverflow::DropOldestTurns,
        0,
    );
    outcome.unwrap();
    let kept: Vec<ChatMessage> = std::iter::once(messages[0].clone())
        .chain(messages[1 + dropped as usize..].iter().cloned())
        .collect();
    let (outcome, _, none) = timed_chat(&mut engine, kept, ContextOverflow::Error, 0);
    outcome.unwrap();
    assert_eq!(none, 0);
}

/// SmolLM2 with its chat template replaced by `template`, padded with a Jinja comment to the
/// same length so no offset in the file moves.
fn with_chat_template(dir: &Path, template: &str) -> PathBuf {
    let source = hearth_testkit::smollm2();
    let bytes = std::fs::read(&source).unwrap();
    let key = b"tokenizer.chat_template";
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key);
    let value = bytes
        .windows(needle.len())
        .position(|window| window == needle.as_slice())
        .expect("SmolLM2 has a chat template")
        + needle.len();
    // The value: its type (u32, a string), its length (u64), its text.
    let length = u64::from_le_bytes(bytes[value + 4..value + 12].try_into().unwrap()) as usize;
    let text_at = value + 12;
    let original = std::str::from_utf8(&bytes[text_at..text_at + length]).unwrap();
    let padding = length
        .checked_sub(template.len() + 4)
        .expect("a shorter template");
    let replacement = format!("{template}{{#{}#}}", " ".repeat(padding));
    let target = dir.join("crafted-template.gguf");
    let replaced = hearth_testkit::craft::with_bytes_replaced(
        &source,
        &target,
        original,
        &replacement,
        text_at + length,
    )
    .unwrap();
    assert_eq!(replaced, 1);
    target
}

/// A model file whose chat template loops to print 100 GB: the render stops at its cap and
/// the request gets a template error, fast, with the engine still serving.
#[test]
fn a_chat_template_that_builds_a_huge_string_is_a_template_error() {
    let dir = tempfile::tempdir().unwrap();
    let bombs = [
        "{% for i in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}",
        "{% set s %}{% for i in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}{% endset %}{{ s }}",
    ];
    for bomb in bombs {
        let model = with_chat_template(dir.path(), bomb);
        let (mut engine, info) = TestEngine::with_model(&model, LoadParams::default());
        assert_eq!(info.template_source, TemplateSource::Jinja);
        let started = Instant::now();
        let id = engine.submit_request(greedy_request(chat("Hi"), 4));
        let error = engine.collect(id).result.unwrap_err();
        assert_eq!(error.kind, ErrorKind::TemplateFailed, "{error:?}");
        assert!(error.message.contains("bytes allowed"), "{}", error.message);
        println!("{bomb}: refused in {} ms", started.elapsed().as_millis());
        assert!(started.elapsed() < Duration::from_secs(5));
        let id = engine.submit_request(greedy_request(
            Prompt::Text {
                text: "Once upon a time".into(),
            },
            3,
        ));
        engine.collect(id).done();
    }
}
