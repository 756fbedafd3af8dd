//! The scheduler on the real SmolLM2 model: batching does not change greedy output, cached
//! prefixes give the same output as fresh ones, streams share steps, multi-turn chats reuse
//! their history (two conversations taking turns each keep a slot), a long prompt does not stall a decoding stream, cancellation works wherever
//! a request is, the queue is bounded, a chat too long for the context drops old turns, and a
//! new load answers the old model's requests and serves the ones sent behind it.

mod common;

use common::{chat, collect_all, greedy_request, TestEngine};
use hearth_protocol::{
    ChatMessage, ContextOverflow, ErrorKind, FinishReason, LoadParams, Prompt, Role, WorkerEvent,
    WorkerRequest,
};

fn engine(params: LoadParams) -> TestEngine {
    TestEngine::with_model(&hearth_testkit::smollm2(), params).0
}

fn prompts() -> Vec<Prompt> {
    [
        "What is the capital of France?",
        "Name three colours of the rainbow.",
        "Write one sentence about the sea.",
        "What is 12 times 12?",
        "Give me a word that rhymes with cat.",
        "What do bees make?",
        "Describe a tree in five words.",
        "Which planet is known as the red planet?",
    ]
    .iter()
    .map(|text| chat(text))
    .collect()
}

#[test]
fn greedy_output_is_identical_alone_and_beside_seven_others() {
    let params = LoadParams {
        n_parallel: 8,
        n_ctx: 8 * 256,
        prefix_cache: false,
        ..LoadParams::default()
    };
    let mut engine = engine(params);
    let alone: Vec<String> = prompts()
        .into_iter()
        .map(|prompt| {
            engine
                .generate(
                    prompt,
                    hearth_protocol::SamplingParams::greedy(),
                    Some(24),
                    &[],
                )
                .text()
        })
        .collect();
    let (_, _, steps_before, _) = engine.stats();
    let ids: Vec<u64> = prompts()
        .into_iter()
        .map(|p| engine.submit_request(greedy_request(p, 24)))
        .collect();
    let outcomes = collect_all(&engine, &ids);
    let (_, running, steps_after, _) = engine.stats();
    for (index, id) in ids.iter().enumerate() {
        assert_eq!(
            outcomes[id].text(),
            alone[index],
            "prompt {index} changed under batching"
        );
    }
    let generated: u32 = outcomes.values().map(|o| o.done().1.generated_tokens).sum();
    assert!(
        steps_after - steps_before < u64::from(generated) / 3,
        "8 streams must share steps: {} steps for {generated} tokens",
        steps_after - steps_before
    );
    assert_eq!(running, 0);
}

#[test]
fn output_is_identical_from_a_cached_prefix_and_computed_fresh() {
    let system = ChatMessage::new(
        Role::System,
        "You are a concise assistant who answers in one short sentence.",
    );
    let first_turn = vec![
        system.clone(),
        ChatMessage::new(Role::User, "Name a fruit."),
    ];
    let fresh = |messages: &Vec<ChatMessage>| {
        let mut engine = engine(LoadParams {
            prefix_cache: false,
            ..LoadParams::default()
        });
        engine
            .generate(
                Prompt::Chat {
                    messages: messages.clone(),
                },
                hearth_protocol::SamplingParams::greedy(),
                Some(20),
                &[],
            )
            .text()
    };
    let mut cached = engine(LoadParams {
        n_parallel: 2,
        ..LoadParams::default()
    });
    let answer = cached
        .generate(
            Prompt::Chat {
                messages: first_turn.clone(),
            },
            hearth_protocol::SamplingParams::greedy(),
            Some(20),
            &[],
        )
        .text();
    assert_eq!(answer, fresh(&first_turn));

    // The same conversation one turn later reuses the cache of its own slot.
    let mut second_turn = first_turn.clone();
    second_turn.push(ChatMessage::new(Role::Assistant, answer));
    second_turn.push(ChatMessage::new(Role::User, "And a vegetable?"));
    let outcome = cached.generate(
        Prompt::Chat {
            messages: second_turn.clone(),
        },
        hearth_protocol::SamplingParams::greedy(),
        Some(20),
        &[],
    );
    assert!(
        outcome.done().1.cached_prompt_tokens > 20,
        "{:?}",
        outcome.done().1
    );
    assert_eq!(outcome.text(), fresh(&second_turn));

    // A new conversation with the same system prompt, while slot 0 holds the old one: the
    // system prompt is copied from the other sequence, not computed again.
    let (_, _, _, _) = cached.stats();
    let long_story = cached.submit_request(greedy_request(
        Prompt::Chat {
            messages: vec![
                system.clone(),
                ChatMessage::new(Role::User, "Tell me a long story about a fox."),
            ],
        },
        40,
    ));
    let other = vec![
        system,
        ChatMessage::new(Role::User, "What colour is the sky?"),
    ];
    let other_id = cached.submit_request(greedy_request(
        Prompt::Chat {
            messages: other.clone(),
        },
        20,
    ));
    let outcomes = collect_all(&cached, &[long_story, other_id]);
    let copied = &outcomes[&other_id];
    assert!(
        copied.done().1.cached_prompt_tokens >= 15,
        "system prompt reused: {:?}",
        copied.done().1
    );
    assert_eq!(copied.text(), fresh(&other));
}

#[test]
fn four_streams_decode_in_shared_steps() {
    let mut engine = engine(LoadParams {
        n_parallel: 4,
        n_ctx: 4 * 256,
        ..LoadParams::default()
    });
    let (_, _, before, _) = engine.stats();
    // Short raw prompts, so however the four are admitted, prefill takes few steps and the
    // count is dominated by decoding.
    let ids: Vec<u64> = ["One", "Two", "Three", "Four"]
        .iter()
        .map(|word| {
            let mut request = greedy_request(
                Prompt::Text {
                    text: word.to_string(),
                },
                24,
            );
            request.ignore_eos = true;
            engine.submit_request(request)
        })
        .collect();
    let outcomes = collect_all(&engine, &ids);
    let (_, _, after, _) = engine.stats();
    for outcome in outcomes.values() {
        assert_eq!(outcome.done().1.generated_tokens, 24);
    }
    // One at a time would take 4 x 24 = 96 steps; sharing steps takes about 24.
    assert!(
        after - before <= 40,
        "{} steps for 4 x 24 tokens",
        after - before
    );
}

#[test]
fn turn_ten_of_a_chat_computes_only_the_new_turn() {
    let mut engine = engine(LoadParams::default());
    let mut messages = vec![ChatMessage::new(
        Role::System,
        "You are a helpful assistant.",
    )];
    let mut last = None;
    for turn in 1..=10 {
        messages.push(ChatMessage::new(
            Role::User,
            format!("This is turn {turn}. Tell me one short fact about the number {turn}."),
        ));
        let outcome = engine.generate(
            Prompt::Chat {
                messages: messages.clone(),
            },
            hearth_protocol::SamplingParams::greedy(),
            Some(16),
            &[],
        );
        messages.push(ChatMessage::new(Role::Assistant, outcome.text()));
        last = Some(outcome.done().1.clone());
    }
    let metrics = last.unwrap();
    let computed = metrics.prompt_tokens - metrics.cached_prompt_tokens;
    assert!(metrics.prompt_tokens > 200, "{metrics:?}");
    assert!(
        computed * 5 <= metrics.prompt_tokens,
        "turn 10 computed {computed} of {} prompt tokens",
        metrics.prompt_tokens
    );
}

/// Two conversations with different system prompts taking turns (A1 B1 A2 B2 …) on two
/// slots: each keeps a slot, so from its second turn on each computes only its new turn.
#[test]
fn two_conversations_taking_turns_each_reuse_their_history() {
    let mut engine = engine(LoadParams {
        n_parallel: 2,
        n_ctx: 2 * 2048,
        ..LoadParams::default()
    });
    let mut conversations = [
        vec![ChatMessage::new(
            Role::System,
            "You are a ship's cook. Answer every question about food in one sentence.",
        )],
        vec![ChatMessage::new(
            Role::System,
            "You are a lighthouse keeper who writes short notes about the weather.",
        )],
    ];
    for turn in 1..=3 {
        for (which, messages) in conversations.iter_mut().enumerate() {
            messages.push(ChatMessage::new(
                Role::User,
                format!("Turn {turn} of conversation {which}: say something short."),
            ));
            let outcome = engine.generate(
                Prompt::Chat {
                    messages: messages.clone(),
                },
                hearth_protocol::SamplingParams::greedy(),
                Some(12),
                &[],
            );
            messages.push(ChatMessage::new(Role::Assistant, outcome.text()));
            let metrics = outcome.done().1.clone();
            if turn > 1 {
                let computed = metrics.prompt_tokens - metrics.cached_prompt_tokens;
                assert!(
                    computed * 2 < metrics.prompt_tokens,
                    "conversation {which}, turn {turn}: computed {computed} of {} prompt tokens",
                    metrics.prompt_tokens
                );
            }
        }
    }
}

#[test]
fn a_long_prompt_does_not_stall_a_decoding_stream() {
    let mut engine = engine(LoadParams {
        n_parallel: 2,
        n_ctx: 2 * 2400,
        ..LoadParams::default()
    });
    let mut decoding = greedy_request(chat("Write a long story about a dragon."), 400);
    decoding.ignore_eos = true;
    let decoding_id = engine.submit_request(decoding);
    let mut decoded = 0;
    while decoded < 8 {
        if let WorkerEvent::Token { .. } = engine.next_event() {
            decoded += 1;
        }
    }
    let long_text =
        "The history of the lighthouse is a history of light and of the people who kept it. "
            .repeat(120);
    let long_id = engine.submit_request(greedy_request(Prompt::Text { text: long_text }, 2));
    // Count the decoding stream's tokens between the long prompt's admission and its first token.
    let mut during_prefill = 0;
    let mut long_started = false;
    let mut long_prompt_tokens = 0;
    loop {
        match engine.next_event() {
            WorkerEvent::Started {
                request_id,
                prompt_tokens,
                ..
            } if request_id == long_id => {
                long_started = true;
                long_prompt_tokens = prompt_tokens;
            }
            WorkerEvent::Token { request_id, .. } if request_id == decoding_id && long_started => {
                during_prefill += 1
            }
            WorkerEvent::Token { request_id, .. } | WorkerEvent::Done { request_id, .. }
                if request_id == long_id =>
            {
                break
            }
            _ => {}
        }
    }
    assert!(long_prompt_tokens >= 2000, "{long_prompt_tokens}");
    assert!(during_prefill >= 20, "the decoding stream got only {during_prefill} tokens while a {long_prompt_tokens}-token prompt was prefilled");
    engine.engine.submit(WorkerRequest::Cancel {
        request_id: decoding_id,
    });
    let _ = collect_all(&engine, &[decoding_id]);
}

#[test]
fn queued_prefilling_and_decoding_requests_can_be_cancelled() {
    let mut engine = engine(LoadParams {
        n_parallel: 2,
        n_ctx: 2 * 2400,
        max_queue: 1,
        ..LoadParams::default()
    });
    // Decoding: a long answer in slot 0.
    let mut story = greedy_request(chat("Write a long story about a castle."), 1000);
    story.ignore_eos = true;
    let decoding = engine.submit_request(story);
    while !matches!(engine.next_event(), WorkerEvent::Token { .. }) {}
    // Prefilling: a long prompt in slot 1, paced beside the decoding stream.
    let long_text = "The sea was calm and the boats came home early that evening. ".repeat(150);
    let prefilling = engine.submit_request(greedy_request(Prompt::Text { text: long_text }, 4));
    let mut replay = Vec::new();
    loop {
        let event = engine.next_event();
        let started =
            matches!(event, WorkerEvent::Started { request_id, .. } if request_id == prefilling);
        replay.push(event);
        if started {
            break;
        }
    }
    // Queued: both slots are busy.
    let queued = engine.submit_request(greedy_request(chat("Hello"), 4));
    // The queue holds one: the next is refused.
    let refused = engine.submit_request(greedy_request(chat("Hi"), 4));
    let refusal = replay.iter().find_map(|e| match e {
        WorkerEvent::Error {
            request_id: Some(id),
            error,
        } if *id == refused => Some(error.clone()),
        _ => None,
    });
    let refusal = refusal.unwrap_or_else(|| {
        collect_all(&engine, &[refused])[&refused]
            .result
            .clone()
            .unwrap_err()
    });
    assert_eq!(refusal.kind, ErrorKind::QueueFull);
    let (queued_count, running, _, _) = engine.stats();
    assert_eq!((queued_count, running), (1, 2));

    for id in [queued, prefilling, decoding] {
        engine
            .engine
            .submit(WorkerRequest::Cancel { request_id: id });
    }
    let outcomes = collect_all(&engine, &[queued, prefilling, decoding]);
    for id in [queued, prefilling, decoding] {
        assert_eq!(
            outcomes[&id].done().0,
            FinishReason::Cancelled,
            "request {id}"
        );
    }
    assert_eq!(outcomes[&queued].done().1.generated_tokens, 0);
    assert_eq!(
        outcomes[&prefilling].done().1.generated_tokens,
        0,
        "cancelled during prefill"
    );
    assert!(outcomes[&decoding].done().1.generated_tokens >= 1);
    let (queued_count, running, _, _) = engine.stats();
    assert_eq!((queued_count, running), (0, 0));
    // The engine still serves.
    assert!(!engine
        .generate(
            chat("Hi"),
            hearth_protocol::SamplingParams::greedy(),
            Some(3),
            &[]
        )
        .text()
        .is_empty());
}

#[test]
fn a_chat_too_long_for_the_context_drops_its_oldest_turns_when_allowed() {
    let (mut engine, info) = TestEngine::with_model(
        &hearth_testkit::smollm2(),
        LoadParams {
            n_ctx: 256,
            ..LoadParams::default()
        },
    );
    let mut messages = vec![ChatMessage::new(Role::System, "Answer briefly.")];
    for turn in 0..12 {
        messages.push(ChatMessage::new(
            Role::User,
            format!("Question {turn}: tell me something about the colour blue and the sky."),
        ));
        messages.push(ChatMessage::new(
            Role::Assistant,
            "The sky looks blue because air scatters blue light more than red light.",
        ));
    }
    messages.push(ChatMessage::new(Role::User, "What did I just ask?"));
    let mut refused = greedy_request(
        Prompt::Chat {
            messages: messages.clone(),
        },
        8,
    );
    refused.context_overflow = ContextOverflow::Error;
    let id = engine.submit_request(refused);
    let error = engine.collect(id).result.unwrap_err();
    assert_eq!(error.kind, ErrorKind::ContextLengthExceeded);

    let mut allowed = greedy_request(
        Prompt::Chat {
            messages: messages.clone(),
        },
        8,
    );
    allowed.context_overflow = ContextOverflow::DropOldestTurns;
    let id = engine.submit_request(allowed);
    let mut dropped = None;
    loop {
        match engine.next_event() {
            WorkerEvent::Started {
                dropped_messages,
                prompt_tokens,
                ..
            } => {
                dropped = Some(dropped_messages);
                assert!(prompt_tokens <= info.n_ctx_per_sequence);
            }
            WorkerEvent::Done {
                request_id,
                finish_reason,
                metrics,
                ..
            } if request_id == id => {
                assert_ne!(finish_reason, FinishReason::Cancelled);
                assert!(metrics.generated_tokens >= 1);
                break;
            }
            WorkerEvent::Error { error, .. } => panic!("{error:?}"),
            _ => {}
        }
    }
    let dropped = dropped.unwrap();
    assert!(
        dropped >= 2 && (dropped as usize) < messages.len() - 1,
        "dropped {dropped}"
    );
}

#[test]
fn a_load_answers_every_request_of_the_old_model_and_serves_the_one_sent_behind_it() {
    let model = hearth_testkit::smollm2();
    let params = LoadParams {
        n_parallel: 1,
        n_ctx: 512,
        ..LoadParams::default()
    };
    let mut engine = engine(params.clone());
    let mut story = greedy_request(chat("Write a long story about a castle."), 200);
    story.ignore_eos = true;
    let running = engine.submit_request(story);
    while !matches!(engine.next_event(), WorkerEvent::Token { .. }) {}
    // The one slot is taken, so this one waits in the queue.
    let queued = engine.submit_request(greedy_request(chat("Hello"), 4));
    // Sent back to back while the session steps, the load and the request behind it are taken
    // off the channel together; that request is meant for the new model.
    let load = engine.id();
    engine.engine.submit(WorkerRequest::Load {
        request_id: load,
        model_path: model,
        params,
    });
    let behind = engine.submit_request(greedy_request(chat("What do bees make?"), 4));
    let mut ends = Vec::new();
    loop {
        match engine.next_event() {
            WorkerEvent::Error {
                request_id: Some(id),
                error,
            } => {
                assert_eq!(
                    error.kind,
                    ErrorKind::NoModelLoaded,
                    "request {id}: {error}"
                );
                ends.push(id);
            }
            WorkerEvent::Loaded { request_id, .. } => ends.push(request_id),
            WorkerEvent::Done { request_id, .. } if request_id == behind => {
                ends.push(request_id);
                break;
            }
            WorkerEvent::Started { .. } | WorkerEvent::Token { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    ends[..2].sort_unstable();
    let mut old = [running, queued];
    old.sort_unstable();
    assert_eq!(ends, [old[0], old[1], load, behind]);
}
