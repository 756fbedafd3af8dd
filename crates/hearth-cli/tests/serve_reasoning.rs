//! Reasoning on the real model: a copy of SmolLM2 whose chat template thinks in `<think>` tags
//! (`serve_support::thinking_model`), served by `hearth serve`. Greedy and short, so it takes
//! seconds.

mod serve_support;

use hearth_testkit::http_client::SseStream;
use serde_json::{json, Value};
use serve_support::thinking_model::write_thinking_model;
use serve_support::TestServer;

fn thinking_server() -> TestServer {
    let home = tempfile::tempdir().unwrap();
    let model = write_thinking_model(home.path());
    let server = TestServer::start_in(home, Some(&model), &["--ctx", "1024"]);
    server.wait_ready();
    server
}

fn question(model: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "temperature": 0,
        "max_tokens": 40,
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// Neither tag, in either channel.
fn assert_no_tag(text: &str) {
    assert!(
        !text.contains("<think>") && !text.contains("</think>"),
        "a tag leaked: {text:?}"
    );
}

#[test]
fn thinking_never_reaches_content_and_turning_it_off_answers_directly() {
    let server = thinking_server();
    let model = server.model_id();

    let thought = server.post_json("/v1/chat/completions", &question(&model, json!({})));
    assert_eq!(thought.status, 200, "{}", thought.text());
    let thought = thought.json();
    let message = &thought["choices"][0]["message"];
    let reasoning = message["reasoning_content"].as_str().unwrap_or_default();
    let content = message["content"].as_str().unwrap_or_default();
    println!("thinking: {reasoning:?}\nanswer: {content:?}");
    assert!(!reasoning.is_empty(), "{thought}");
    assert!(
        !content.is_empty(),
        "the model closed its thinking: {thought}"
    );
    assert_no_tag(reasoning);
    assert_no_tag(content);
    let usage = &thought["usage"];
    let reasoning_tokens = usage["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        reasoning_tokens > 0 && reasoning_tokens < usage["completion_tokens"].as_u64().unwrap(),
        "{usage}"
    );

    // Streamed: the same split, piece by piece.
    let body = question(&model, json!({"stream": true}));
    let events = SseStream::open(&server, "/v1/chat/completions", &body).collect();
    let deltas = |key: &str| -> String {
        events
            .iter()
            .filter(|data| *data != "[DONE]")
            .map(|data| serde_json::from_str::<Value>(data).unwrap())
            .filter_map(|chunk| {
                chunk["choices"][0]["delta"][key]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    assert_eq!(deltas("reasoning_content"), reasoning);
    assert_eq!(deltas("content"), content);

    // Off: the prompt carries the closed, empty block, and the model answers at once.
    let direct = server
        .post_json(
            "/v1/chat/completions",
            &question(&model, json!({"reasoning_effort": "none"})),
        )
        .json();
    let direct_message = &direct["choices"][0]["message"];
    println!("direct: {direct_message}");
    assert!(
        direct_message.get("reasoning_content").is_none(),
        "{direct}"
    );
    assert_eq!(
        direct["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    let direct_content = direct_message["content"].as_str().unwrap();
    // The small model, shown one example, still writes a `</think>` after its direct answer
    // (it opened none: it is no thinking, and stays the answer's text).
    assert!(
        !direct_content.is_empty() && !direct_content.contains("<think>"),
        "{direct_content:?}"
    );
    assert_ne!(
        direct_content, content,
        "turning thinking off changed nothing"
    );
    // `\n</think>\n\n` more prompt than with thinking on.
    assert!(
        direct["usage"]["prompt_tokens"].as_u64() > thought["usage"]["prompt_tokens"].as_u64(),
        "{direct}\n{thought}"
    );
    let llama_server_off = server
        .post_json(
            "/v1/chat/completions",
            &question(
                &model,
                json!({"chat_template_kwargs": {"enable_thinking": false}}),
            ),
        )
        .json();
    assert_eq!(
        llama_server_off["choices"][0]["message"]["content"],
        direct_content
    );

    // Raw: as the model wrote it, the prompt's opening tag first.
    let raw = server
        .post_json(
            "/v1/chat/completions",
            &question(&model, json!({"reasoning_format": "none"})),
        )
        .json();
    let raw_content = raw["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        raw_content.starts_with("<think>\n") && raw_content.contains("</think>"),
        "{raw_content:?}"
    );

    // A conversation keeps the thinking apart, with its count and time.
    let created = server.post_json(
        "/api/conversations",
        &json!({"settings": {"temperature": 0, "max_tokens": 40}}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].clone();
    let answer = SseStream::open(
        &server,
        &format!("/api/conversations/{id}/messages"),
        &json!({"content": "What is 2+2?"}),
    )
    .collect();
    let done: Value = serde_json::from_str(answer.last().unwrap()).unwrap();
    assert_eq!(done["type"], "done", "{answer:?}");
    let saved = &done["message"];
    assert_eq!(saved["reasoning"], reasoning);
    assert_eq!(saved["content"], content);
    assert_eq!(saved["reasoning_tokens"], reasoning_tokens);
}
