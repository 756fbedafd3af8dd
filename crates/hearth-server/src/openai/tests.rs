//! The answer shapes, checked field by field and, against what the `json!` objects they
//! replaced wrote, byte for byte.

use super::*;
use crate::wire::assert_sorted;
use hearth_protocol::TopLogprob;
use serde_json::{json, Value};

fn json_of(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap()
}

fn context(endpoint: Endpoint, include_usage: bool) -> AnswerContext {
    AnswerContext {
        id: new_response_id(endpoint),
        created: 1,
        model: "m".into(),
        endpoint,
        include_usage,
        logprobs: true,
    }
}

fn figures() -> RequestMetrics {
    RequestMetrics {
        prompt_tokens: 10,
        cached_prompt_tokens: 4,
        generated_tokens: 5,
        ttft_ms: 30.0,
        e2e_ms: 70.0,
        tpot_ms: 10.0,
        ..RequestMetrics::default()
    }
}

#[test]
fn ids_are_unique_and_prefixed() {
    let a = new_response_id(Endpoint::ChatCompletions);
    let b = new_response_id(Endpoint::ChatCompletions);
    assert!(a.starts_with("chatcmpl-") && a.len() == "chatcmpl-".len() + 32);
    assert_ne!(a, b);
    assert!(new_response_id(Endpoint::Completions).starts_with("cmpl-"));
}

#[test]
fn a_full_chat_answer_has_usage_and_timings() {
    let context = context(Endpoint::ChatCompletions, false);
    let answer = json_of(&context.full_answer(
        "hi",
        &AnswerReasoning::default(),
        &[],
        FinishReason::Length,
        &[],
        &figures(),
    ));
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "hi");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["total_tokens"], 15);
    assert_eq!(answer["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(answer["timings"]["prompt_n"], 6);
    assert_eq!(answer["timings"]["predicted_ms"], 40.0);
}

fn call(arguments: &str) -> AnswerCall {
    AnswerCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: arguments.into(),
    }
}

#[test]
fn tool_calls_whole_and_streamed_take_openais_shapes() {
    let context = context(Endpoint::ChatCompletions, false);
    let calls = [call(r#"{"city":"Paris"}"#)];
    let no_reasoning = AnswerReasoning::default();
    let answer = context.full_answer(
        "",
        &no_reasoning,
        &calls,
        FinishReason::Stop,
        &[],
        &figures(),
    );
    assert_sorted(&answer);
    let answer = json_of(&answer);
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        answer["choices"][0]["message"],
        json!({"content": null, "refusal": null, "role": "assistant", "tool_calls": [
            {"function": {"arguments": "{\"city\":\"Paris\"}", "name": "get_weather"},
             "id": "call_1", "type": "function"}]})
    );
    // Words and calls together keep the words.
    let answer = json_of(&context.full_answer(
        "Sure.",
        &AnswerReasoning::default(),
        &calls,
        FinishReason::Stop,
        &[],
        &figures(),
    ));
    assert_eq!(answer["choices"][0]["message"]["content"], "Sure.");

    let long = call(&format!(r#"{{"city":"{}"}}"#, "é".repeat(20)));
    let chunks = context.tool_call_chunks(2, &long);
    let deltas: Vec<Value> = chunks
        .iter()
        .map(|chunk| {
            assert_sorted(chunk);
            json_of(chunk)["choices"][0]["delta"]["tool_calls"][0].clone()
        })
        .collect();
    assert_eq!(
        deltas[0],
        json!({"function": {"arguments": "", "name": "get_weather"}, "id": "call_1", "index": 2, "type": "function"})
    );
    assert!(deltas.len() > 2, "the arguments come in fragments");
    let mut arguments = String::new();
    for delta in &deltas[1..] {
        assert_eq!(delta["index"], 2);
        assert_eq!(delta.as_object().unwrap().len(), 2, "{delta}");
        arguments.push_str(delta["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(arguments, long.arguments);
}

#[test]
fn stream_chunks_follow_the_openai_shapes() {
    let context = context(Endpoint::ChatCompletions, true);
    let role = json_of(&context.role_chunk());
    assert_eq!(role["object"], "chat.completion.chunk");
    assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
    assert!(role["usage"].is_null() && role.as_object().unwrap().contains_key("usage"));
    let usage = json_of(&context.usage_chunk(&figures(), None));
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert_eq!(role["id"], usage["id"]);
}

#[test]
fn logprobs_take_each_endpoint_shape() {
    let token = TokenLogprob {
        token: "Hi".into(),
        bytes: b"Hi".to_vec(),
        logprob: -0.5,
        top_logprobs: vec![TopLogprob {
            token: "Hello".into(),
            bytes: b"Hello".to_vec(),
            logprob: -1.0,
        }],
    };
    let chat_context = context(Endpoint::ChatCompletions, false);
    let chat = json_of(&chat_context.text_chunk("Hi", std::slice::from_ref(&token), 0));
    assert_eq!(
        chat["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0]["token"],
        "Hello"
    );
    let legacy_context = context(Endpoint::Completions, false);
    let tokens = [token];
    let legacy = json_of(&legacy_context.text_chunk("Hi", &tokens, 7));
    assert_eq!(legacy["choices"][0]["logprobs"]["text_offset"], json!([7]));
    assert_eq!(
        legacy["choices"][0]["logprobs"]["top_logprobs"][0]["Hello"],
        -1.0
    );
}

/// Logprobs whose f32 values are not exact in f64, two alternatives (one the token itself),
/// and a token without alternatives.
fn golden_logprobs() -> Vec<TokenLogprob> {
    let top = |token: &str, logprob: f32| TopLogprob {
        token: token.into(),
        bytes: token.as_bytes().to_vec(),
        logprob,
    };
    vec![
        TokenLogprob {
            token: "Hi".into(),
            bytes: b"Hi".to_vec(),
            logprob: -0.1,
            top_logprobs: vec![top("Hello", -1.3), top("Hi", -0.1)],
        },
        TokenLogprob {
            token: " there".into(),
            bytes: b" there".to_vec(),
            logprob: -2.7,
            top_logprobs: vec![],
        },
    ]
}

fn golden_metrics() -> RequestMetrics {
    RequestMetrics {
        prompt_tokens: 10,
        cached_prompt_tokens: 4,
        prompt_cache_tier: hearth_protocol::CacheTier::Slot,
        generated_tokens: 5,
        ttft_ms: 30.5,
        e2e_ms: 70.25,
        tpot_ms: 10.1,
        itl_ms: vec![1.0, 2.0],
        itl_p50_ms: 9.5,
        itl_p95_ms: 12.75,
        itl_max_ms: 13.0,
        prefill_ms: 20.0,
        queue_ms: 0.5,
        prefill_tokens_per_s: 300.0,
        decode_tokens_per_s: 99.9,
        drafted_tokens: 0,
        accepted_tokens: 0,
        acceptance_rate: 0.0,
    }
}

/// Every shape of both endpoints, byte for byte as the `json!` objects these types replaced
/// wrote them (`golden.txt` was written by that code).
#[test]
fn answers_and_chunks_are_byte_for_byte_the_json_objects_they_replaced() {
    let logprobs = golden_logprobs();
    let metrics = golden_metrics();
    let no_reasoning = AnswerReasoning::default();
    let mut lines = Vec::new();
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions] {
        for (include_usage, with_logprobs) in [(false, false), (true, true)] {
            let context = AnswerContext {
                id: "ID".into(),
                created: 7,
                model: "m".into(),
                endpoint,
                include_usage,
                logprobs: with_logprobs,
            };
            let shapes = [
                (
                    "full",
                    context.full_answer(
                        "a \"b\"\n",
                        &no_reasoning,
                        &[],
                        FinishReason::Stop,
                        &logprobs,
                        &metrics,
                    ),
                ),
                ("role", context.role_chunk()),
                ("text", context.text_chunk("Hi there", &logprobs, 3)),
                (
                    "finish",
                    context.finish_chunk(finish_reason_str(FinishReason::Length), &metrics),
                ),
                ("usage", context.usage_chunk(&metrics, None)),
            ];
            for (name, shape) in shapes {
                assert_sorted(&shape);
                let json = serde_json::to_string(&shape).unwrap();
                lines.push(format!(
                    "{endpoint:?} {include_usage} {with_logprobs} {name} {json}"
                ));
            }
        }
    }
    let model = model_object("m", 5);
    assert_sorted(&model);
    lines.push(format!("model {}", serde_json::to_string(&model).unwrap()));
    let mut worker = hearth_protocol::WorkerError::new(
        hearth_protocol::ErrorKind::ContextLengthExceeded,
        "too long",
    );
    worker.prompt_tokens = Some(5000);
    worker.n_ctx = Some(2048);
    let errors = [
        crate::error::ApiError::from_supervisor(
            hearth_supervisor::SupervisorError::Worker(worker),
            "messages",
        ),
        crate::error::ApiError::model_not_found("x"),
        crate::error::ApiError::new(axum::http::StatusCode::BAD_REQUEST, "t", "m"),
    ];
    for (index, error) in errors.iter().enumerate() {
        let name = if index == 0 {
            "error".to_string()
        } else {
            format!("error{}", index + 1)
        };
        assert_sorted(&error.body());
        lines.push(format!(
            "{name} {}",
            serde_json::to_string(&error.body()).unwrap()
        ));
    }
    let expected = include_str!("golden.txt").replace("{fingerprint}", SYSTEM_FINGERPRINT);
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(lines.len(), expected.len());
    for (line, expected) in lines.iter().zip(expected) {
        assert_eq!(line, expected);
    }
}

#[test]
fn thinking_goes_apart_from_the_content_whole_and_streamed_with_its_token_count() {
    let context = context(Endpoint::ChatCompletions, true);
    let reasoning = AnswerReasoning {
        text: "2 + 2 = 4".into(),
        tokens: Some(3),
    };
    let answer = context.full_answer(
        "Four.",
        &reasoning,
        &[],
        FinishReason::Stop,
        &[],
        &figures(),
    );
    assert_sorted(&answer);
    let answer = json_of(&answer);
    assert_eq!(answer["choices"][0]["message"]["content"], "Four.");
    assert_eq!(
        answer["choices"][0]["message"]["reasoning_content"],
        "2 + 2 = 4"
    );
    assert_eq!(
        answer["usage"]["completion_tokens_details"],
        json!({"reasoning_tokens": 3})
    );
    let chunk = context.reasoning_chunk("2 + 2", &[]);
    assert_sorted(&chunk);
    let chunk = json_of(&chunk);
    assert_eq!(
        chunk["choices"][0]["delta"],
        json!({"reasoning_content": "2 + 2"})
    );
    let usage = json_of(&context.usage_chunk(&figures(), Some(0)));
    assert_eq!(
        usage["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    // A model that does not think reports neither.
    let plain = json_of(&context.full_answer(
        "Hi",
        &AnswerReasoning::default(),
        &[],
        FinishReason::Stop,
        &[],
        &figures(),
    ));
    assert!(plain["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());
    assert!(plain["usage"].get("completion_tokens_details").is_none());
}
