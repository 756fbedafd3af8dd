//! `hearth serve` against hostile JSON schemas on the real SmolLM2 model: schemas past the
//! bounds (thousands of optional properties, deeply nested choices) sent beside a running
//! stream are refused with a clear 400, the stream finishes, and the server stays up.

mod serve_support;

use std::time::Duration;

use serde_json::{json, Value};
use serve_support::{check_error, SseStream, TestServer};

/// An object schema with `count` optional string properties.
fn optional_properties_schema(count: usize) -> Value {
    let properties: serde_json::Map<String, Value> = (0..count)
        .map(|i| (format!("field_{i}"), json!({"type": "string"})))
        .collect();
    json!({"type": "object", "properties": properties})
}

/// Two nested 32-way choices: within every bound, yet llama.cpp's grammar multiplies them on
/// the second `[` (seconds of work, which ran on the engine thread every stream shares).
fn nested_choices_schema(ways: usize) -> Value {
    let level = |reference: &str| -> Vec<Value> {
        (0..ways)
            .map(|i| json!({"type": "array", "prefixItems": [{"$ref": reference}, {"const": i}]}))
            .collect()
    };
    json!({"anyOf": level("#/$defs/inner"),
           "$defs": {"inner": {"anyOf": level("#/$defs/leaf")},
                     "leaf": {"enum": (0..ways).collect::<Vec<_>>()}}})
}

/// Issue 15: a `response_format` schema of 2,000 optional properties held the engine thread
/// for 15 s (every stream froze) and one of 5,000 made llama.cpp abort the worker. Sent beside
/// a running stream, each is refused with a 4xx, the stream keeps its pace and finishes, and
/// the server and its worker stay up.
#[test]
fn hostile_schemas_beside_a_running_stream_are_refused_and_the_stream_finishes() {
    let server = TestServer::start(&["--parallel", "2", "--ctx", "4096"]);
    server.wait_ready();
    let model = server.model_id();
    let mut stream = SseStream::open(
        &server,
        "/v1/chat/completions",
        &json!({"model": model, "stream": true, "ignore_eos": true, "max_tokens": 300,
                "temperature": 0,
                "messages": [{"role": "user", "content": "Tell a long story about a lighthouse."}]}),
    );
    assert_eq!(stream.status, 200);
    assert!(stream.next_data().is_some(), "no first chunk");
    let workers = server.worker_pids();
    assert_eq!(workers.len(), 1, "{workers:?}");

    let client: serve_support::Client = (*server).clone();
    let body = |schema: Value| {
        json!({"model": model, "max_tokens": 8, "temperature": 0,
               "messages": [{"role": "user", "content": "Describe a person as JSON."}],
               "response_format": {"type": "json_schema",
                                   "json_schema": {"name": "hostile", "schema": schema}}})
    };
    let hostile = vec![
        (
            "2,000 optional properties",
            body(optional_properties_schema(2000)),
        ),
        (
            "5,000 optional properties",
            body(optional_properties_schema(5000)),
        ),
        ("nested 32-way choices", body(nested_choices_schema(32))),
    ];
    let sender = std::thread::spawn(move || {
        hostile
            .into_iter()
            .map(|(name, body)| {
                let started = std::time::Instant::now();
                let response = client.post_json("/v1/chat/completions", &body);
                (name, response, started.elapsed())
            })
            .collect::<Vec<_>>()
    });
    // The stream, timed chunk by chunk while the hostile requests are answered.
    let mut gaps = Vec::new();
    let mut last = std::time::Instant::now();
    let mut chunks = Vec::new();
    while let Some(data) = stream.next_data() {
        gaps.push(last.elapsed());
        last = std::time::Instant::now();
        chunks.push(data);
    }
    for (name, response, took) in sender.join().unwrap() {
        assert!(
            (400..500).contains(&response.status),
            "{name}: expected a 4xx, got {}: {}",
            response.status,
            response.text()
        );
        check_error(
            name,
            &response,
            response.status,
            "invalid_response_format",
            Some("response_format"),
        );
        println!(
            "{name}: {} after {} ms: {}",
            response.status,
            took.as_millis(),
            response.json()["error"]["message"]
        );
    }
    assert_eq!(
        chunks.last().map(String::as_str),
        Some("[DONE]"),
        "{chunks:?}"
    );
    let finish = chunks
        .iter()
        .rev()
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find_map(|chunk| {
            chunk["choices"][0]["finish_reason"]
                .as_str()
                .map(String::from)
        });
    assert_eq!(finish.as_deref(), Some("length"));
    let longest = gaps.iter().max().copied().unwrap_or_default();
    println!(
        "stream: {} chunks, longest gap {} ms",
        chunks.len(),
        longest.as_millis()
    );
    assert!(
        longest < Duration::from_secs(5),
        "the stream stalled for {longest:?}"
    );
    assert_eq!(server.worker_pids(), workers, "the worker was replaced");
    assert_eq!(server.get("/health").status, 200);
}
