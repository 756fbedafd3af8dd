//! Embeddings on the real SmolLM2 model (a chat model, so mean pooling): vectors of the
//! model's width, unit length, the same alone or batched, closer for related texts; a large
//! batch takes its turns beside a greedy stream, which keeps its text; too-long inputs,
//! unknown tokens and cancellation end a request cleanly.

mod common;

use common::{chat, collect_all, greedy_request, TestEngine};
use hearth_protocol::{
    EmbedRequest, EmbeddingInput, ErrorKind, FinishReason, LoadParams, WorkerEvent, WorkerRequest,
};

fn engine() -> (TestEngine, u32) {
    let (engine, info) = TestEngine::with_model(
        &hearth_testkit::smollm2(),
        LoadParams {
            n_parallel: 2,
            n_ctx: 2 * 1024,
            ..LoadParams::default()
        },
    );
    (engine, info.n_embd)
}

fn text(text: &str) -> EmbeddingInput {
    EmbeddingInput::Text { text: text.into() }
}

fn submit(engine: &mut TestEngine, inputs: Vec<EmbeddingInput>) -> u64 {
    let request_id = engine.id();
    engine
        .engine
        .submit(WorkerRequest::Embed(EmbedRequest { request_id, inputs }));
    request_id
}

/// The vectors of one request, in input order, and its token count (or its error).
fn embeddings(
    engine: &TestEngine,
    request_id: u64,
    count: usize,
) -> Result<(Vec<Vec<f32>>, u32), hearth_protocol::WorkerError> {
    let mut vectors = vec![Vec::new(); count];
    loop {
        match engine.next_event() {
            WorkerEvent::Embedding {
                request_id: id,
                index,
                embedding,
            } if id == request_id => {
                vectors[index as usize] = embedding;
            }
            WorkerEvent::Embedded {
                request_id: id,
                prompt_tokens,
            } if id == request_id => return Ok((vectors, prompt_tokens)),
            WorkerEvent::Error {
                request_id: Some(id),
                error,
            } if id == request_id => return Err(error),
            _ => {}
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn embeddings_are_normalized_the_same_alone_or_batched_and_closer_for_related_texts() {
    let (mut engine, n_embd) = engine();
    assert_eq!(n_embd, 576);
    let texts = [
        "The cat sat on the mat.",
        "A cat was sitting on the mat.",
        "Quarterly revenue rose on strong bond sales.",
    ];
    let id = submit(&mut engine, texts.iter().map(|t| text(t)).collect());
    let (vectors, tokens) = embeddings(&engine, id, 3).unwrap();
    assert!(tokens > 15, "{tokens}");
    for vector in &vectors {
        assert_eq!(vector.len(), 576);
        assert!((dot(vector, vector) - 1.0).abs() < 1e-4);
    }
    assert!(
        dot(&vectors[0], &vectors[1]) > dot(&vectors[0], &vectors[2]),
        "related {} unrelated {}",
        dot(&vectors[0], &vectors[1]),
        dot(&vectors[0], &vectors[2])
    );
    let id = submit(&mut engine, vec![text(texts[0])]);
    let (alone, _) = embeddings(&engine, id, 1).unwrap();
    let largest_difference = alone[0]
        .iter()
        .zip(&vectors[0])
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(largest_difference < 1e-5, "{largest_difference}");
}

#[test]
fn a_large_embedding_batch_takes_turns_beside_a_stream_that_keeps_its_text() {
    let (mut engine, _) = engine();
    let alone = engine.submit_request(greedy_request(chat("Tell me about the sea."), 32));
    let expected = collect_all(&engine, &[alone])
        .remove(&alone)
        .unwrap()
        .text();
    let stream = engine.submit_request(greedy_request(chat("Tell me about the sea."), 32));
    // Each engine step embeds at most 16 inputs: 1,024 take at least 64 steps, the stream 33.
    let batch = submit(
        &mut engine,
        (0..1024).map(|i| text(&format!("note {i}"))).collect(),
    );
    let mut pieces = Vec::new();
    let mut embedded_before_the_stream_ended = 0;
    loop {
        match engine.next_event() {
            WorkerEvent::Token {
                request_id, text, ..
            } if request_id == stream => pieces.push(text),
            WorkerEvent::Done {
                request_id,
                finish_reason,
                ..
            } if request_id == stream => {
                assert_ne!(finish_reason, FinishReason::Cancelled);
                break;
            }
            WorkerEvent::Embedding { request_id, .. } if request_id == batch => {
                embedded_before_the_stream_ended += 1
            }
            WorkerEvent::Embedded { request_id, .. } if request_id == batch => {
                panic!("the stream waited for the whole batch")
            }
            WorkerEvent::Error { error, .. } => panic!("{error:?}"),
            _ => {}
        }
    }
    assert!(embedded_before_the_stream_ended < 1024);
    assert_eq!(pieces.concat(), expected);
    // The rest of the batch is cancelled; it ends as cancelled.
    engine
        .engine
        .submit(WorkerRequest::Cancel { request_id: batch });
    loop {
        if let WorkerEvent::Done {
            request_id,
            finish_reason,
            ..
        } = engine.next_event()
        {
            if request_id == batch {
                assert_eq!(finish_reason, FinishReason::Cancelled);
                break;
            }
        }
    }
}

#[test]
fn too_long_inputs_unknown_tokens_and_cancellation_end_the_request_cleanly() {
    let (mut engine, _) = engine();
    let long = "lighthouse ".repeat(3000);
    let id = submit(&mut engine, vec![text("short"), text(&long)]);
    let error = embeddings(&engine, id, 2).unwrap_err();
    assert_eq!(error.kind, ErrorKind::ContextLengthExceeded);
    assert!(error.message.contains("input 1"), "{}", error.message);

    let id = submit(
        &mut engine,
        vec![EmbeddingInput::Tokens {
            tokens: vec![1, 9_999_999],
        }],
    );
    let error = embeddings(&engine, id, 1).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);

    let id = submit(
        &mut engine,
        (0..2000).map(|i| text(&format!("line {i}"))).collect(),
    );
    engine
        .engine
        .submit(WorkerRequest::Cancel { request_id: id });
    loop {
        match engine.next_event() {
            WorkerEvent::Done {
                request_id,
                finish_reason,
                ..
            } if request_id == id => {
                assert_eq!(finish_reason, FinishReason::Cancelled);
                break;
            }
            WorkerEvent::Embedded { request_id, .. } if request_id == id => {
                panic!("a cancelled request finished")
            }
            _ => {}
        }
    }
    // The engine goes on answering.
    let id = submit(&mut engine, vec![text("still here")]);
    assert_eq!(embeddings(&engine, id, 1).unwrap().0.len(), 1);
}
