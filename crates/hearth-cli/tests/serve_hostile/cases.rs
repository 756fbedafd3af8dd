//! The hostile requests `hostile_requests_get_exact_errors_and_the_server_still_answers`
//! sends, each with the status, error code and `param` that must come back: malformed and
//! oversized JSON, every field of the chat, completion and embeddings bodies wrong in turn,
//! unknown models and routes, and foreign hosts, origins and keys.

use serde_json::{json, Value};

use super::serve_support::TestServer;
use super::KEY;

/// One hostile request and what must come back.
pub struct Case {
    pub name: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub code: &'static str,
    pub param: Option<&'static str>,
}

pub fn json_headers(server: &TestServer) -> Vec<(String, String)> {
    let mut headers = server.auth();
    headers.push(("Content-Type".into(), "application/json".into()));
    headers
}

fn case(
    server: &TestServer,
    name: &'static str,
    path: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
    param: Option<&'static str>,
) -> Case {
    Case {
        name,
        method: "POST",
        path,
        headers: json_headers(server),
        body: body.into(),
        status,
        code,
        param,
    }
}

/// A valid chat body with `changes` applied (a `null` change removes the field).
fn chat(model: &str, changes: Value) -> Vec<u8> {
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
    });
    with_changes(body, changes)
}

/// A valid completion body with `changes` applied, as [`chat`].
fn completion(model: &str, changes: Value) -> Vec<u8> {
    let body = json!({"model": model, "prompt": "Once upon a time", "max_tokens": 4});
    with_changes(body, changes)
}

/// `body` with each field of `changes` set, or removed where the change is `null`.
fn with_changes(mut body: Value, changes: Value) -> Vec<u8> {
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value.clone();
        }
    }
    body.to_string().into_bytes()
}

/// An embeddings body for `input` (`null`: without one).
fn embed(model: &str, input: Value) -> Vec<u8> {
    let mut body = json!({"model": model});
    if !input.is_null() {
        body["input"] = input;
    }
    body.to_string().into_bytes()
}

pub fn hostile_cases(server: &TestServer, model: &str) -> Vec<Case> {
    let chat_path = "/v1/chat/completions";
    let long_prompt = "history ".repeat(2000);
    let mut cases = vec![
        case(server, "truncated JSON", chat_path, "{\"model\": \"x\", \"messages\": [", 400, "invalid_json", None),
        case(server, "empty body", chat_path, "", 400, "invalid_json", None),
        case(server, "JSON array body", chat_path, "[1, 2, 3]", 400, "invalid_json", None),
        case(server, "JSON string body", chat_path, "\"hello\"", 400, "invalid_json", None),
        case(server, "invalid UTF-8", chat_path, vec![0xff, 0xfe, 0xfd, b'{'], 400, "invalid_json", None),
        case(server, "nesting 100000 deep", chat_path, "[".repeat(100_000), 400, "invalid_json", None),
        case(server, "number beyond f64", chat_path, format!("{{\"model\": \"{model}\", \"messages\": [], \"temperature\": 1e999}}"), 400, "invalid_json", None),
        case(server, "model missing", chat_path, chat(model, json!({"model": null})), 400, "missing_required_parameter", Some("model")),
        case(server, "model is a number", chat_path, chat(model, json!({"model": 42})), 400, "invalid_type", Some("model")),
        case(server, "messages missing", chat_path, chat(model, json!({"messages": null})), 400, "missing_required_parameter", Some("messages")),
        case(server, "messages is a string", chat_path, chat(model, json!({"messages": "hi"})), 400, "invalid_type", Some("messages")),
        case(server, "messages empty", chat_path, chat(model, json!({"messages": []})), 400, "invalid_value", Some("messages")),
        case(server, "message is a string", chat_path, chat(model, json!({"messages": ["hi"]})), 400, "invalid_type", Some("messages[0]")),
        case(server, "message without role", chat_path, chat(model, json!({"messages": [{"content": "hi"}]})), 400, "missing_required_parameter", Some("messages[0].role")),
        case(server, "unknown role", chat_path, chat(model, json!({"messages": [{"role": "wizard", "content": "hi"}]})), 400, "invalid_value", Some("messages[0].role")),
        case(server, "content is a number", chat_path, chat(model, json!({"messages": [{"role": "user", "content": 12}]})), 400, "invalid_type", Some("messages[0].content")),
        case(server, "image content", chat_path, chat(model, json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]})), 400, "unsupported_value", Some("messages[0].content[0].type")),
        case(server, "NUL character in content", chat_path, chat(model, json!({"messages": [{"role": "user", "content": "a\u{0}b"}]})), 400, "invalid_prompt", Some("messages")),
        case(server, "n = 2", chat_path, chat(model, json!({"n": 2})), 400, "unsupported_value", Some("n")),
        case(server, "negative max_tokens", chat_path, chat(model, json!({"max_tokens": -1})), 400, "invalid_value", Some("max_tokens")),
        case(server, "absurd max_tokens", chat_path, chat(model, json!({"max_tokens": 1e300})), 400, "invalid_value", Some("max_tokens")),
        case(server, "max_tokens beyond u64", chat_path, format!("{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"x\"}}], \"max_tokens\": 18446744073709551616}}"), 400, "invalid_value", Some("max_tokens")),
        case(server, "max_completion_tokens zero", chat_path, chat(model, json!({"max_tokens": null, "max_completion_tokens": 0})), 400, "invalid_value", Some("max_completion_tokens")),
        case(server, "temperature is a string", chat_path, chat(model, json!({"temperature": "hot"})), 400, "invalid_type", Some("temperature")),
        case(server, "temperature NaN as a string", chat_path, chat(model, json!({"temperature": "NaN"})), 400, "invalid_type", Some("temperature")),
        case(server, "temperature too high", chat_path, chat(model, json!({"temperature": 50})), 400, "invalid_value", Some("temperature")),
        case(server, "top_p above 1", chat_path, chat(model, json!({"top_p": 7})), 400, "invalid_value", Some("top_p")),
        case(server, "presence_penalty huge", chat_path, chat(model, json!({"presence_penalty": 1e20})), 400, "invalid_value", Some("presence_penalty")),
        case(server, "stop is a number", chat_path, chat(model, json!({"stop": 42})), 400, "invalid_type", Some("stop")),
        case(server, "stop list of 100", chat_path, chat(model, json!({"stop": vec!["x"; 100]})), 400, "invalid_value", Some("stop")),
        case(server, "empty stop string", chat_path, chat(model, json!({"stop": [""]})), 400, "invalid_value", Some("stop[0]")),
        case(server, "seed is a string", chat_path, chat(model, json!({"seed": "abc"})), 400, "invalid_type", Some("seed")),
        case(server, "seed is fractional", chat_path, chat(model, json!({"seed": 1.5})), 400, "invalid_value", Some("seed")),
        case(server, "stream is a string", chat_path, chat(model, json!({"stream": "yes"})), 400, "invalid_type", Some("stream")),
        case(server, "stream_options without stream", chat_path, chat(model, json!({"stream_options": {"include_usage": true}})), 400, "invalid_value", Some("stream_options")),
        case(server, "unknown response_format", chat_path, chat(model, json!({"response_format": {"type": "xml"}})), 400, "invalid_value", Some("response_format.type")),
        case(server, "json_schema without schema object", chat_path, chat(model, json!({"response_format": {"type": "json_schema"}})), 400, "missing_required_parameter", Some("response_format.json_schema")),
        case(server, "schema the engine cannot compile", chat_path, chat(model, json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}})), 400, "invalid_response_format", Some("response_format")),
        case(server, "logprobs is a string", chat_path, chat(model, json!({"logprobs": "yes"})), 400, "invalid_type", Some("logprobs")),
        case(server, "top_logprobs 50", chat_path, chat(model, json!({"logprobs": true, "top_logprobs": 50})), 400, "invalid_value", Some("top_logprobs")),
        case(server, "tools named twice", chat_path, chat(model, json!({"tools": [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]})), 400, "invalid_value", Some("tools[1].function.name")),
        case(server, "unknown model", chat_path, chat(model, json!({"model": "gpt-4o"})), 404, "model_not_found", Some("model")),
        case(server, "path as model", chat_path, chat(model, json!({"model": "../../../../etc/passwd"})), 404, "model_not_found", Some("model")),
        case(server, "prompt too long", chat_path, chat(model, json!({"messages": [{"role": "user", "content": long_prompt}]})), 400, "context_length_exceeded", Some("messages")),
        case(server, "prompt too long, streamed", chat_path, chat(model, json!({"stream": true, "messages": [{"role": "user", "content": long_prompt}]})), 400, "context_length_exceeded", Some("messages")),
        case(server, "completion without prompt", "/v1/completions", completion(model, json!({"prompt": null})), 400, "missing_required_parameter", Some("prompt")),
        case(server, "two prompts", "/v1/completions", completion(model, json!({"prompt": ["a", "b"]})), 400, "unsupported_value", Some("prompt")),
        case(server, "negative token id", "/v1/completions", completion(model, json!({"prompt": [1, -5]})), 400, "invalid_value", Some("prompt")),
        case(server, "token id outside the vocabulary", "/v1/completions", completion(model, json!({"prompt": [2_000_000_000]})), 400, "invalid_prompt", Some("prompt")),
        case(server, "completion logprobs 9", "/v1/completions", completion(model, json!({"logprobs": 9})), 400, "invalid_value", Some("logprobs")),
        case(server, "unknown route", "/v1/audio/speech", chat(model, json!({})), 404, "unknown_url", None),
        case(server, "embeddings without input", "/v1/embeddings", embed(model, json!(null)), 400, "missing_required_parameter", Some("input")),
        case(server, "embeddings of an empty text", "/v1/embeddings", embed(model, json!(["fine", ""])), 400, "invalid_value", Some("input[1]")),
        case(server, "embeddings of 10,000 texts", "/v1/embeddings", embed(model, json!(vec!["a"; 10_000])), 400, "invalid_value", Some("input")),
        case(server, "embeddings of a nested object", "/v1/embeddings", embed(model, json!([{"text": "a"}])), 400, "invalid_type", Some("input[0]")),
        case(server, "embeddings of a negative token", "/v1/embeddings", embed(model, json!([[1, -2]])), 400, "invalid_value", Some("input[0][1]")),
        case(server, "embeddings with another length", "/v1/embeddings", format!("{{\"model\": \"{model}\", \"input\": \"a\", \"dimensions\": 7}}"), 400, "unsupported_value", Some("dimensions")),
        case(server, "embeddings as hex", "/v1/embeddings", format!("{{\"model\": \"{model}\", \"input\": \"a\", \"encoding_format\": \"hex\"}}"), 400, "invalid_value", Some("encoding_format")),
    ];
    let get = |name, path, status, code, headers: Vec<(String, String)>| Case {
        name,
        method: "GET",
        path,
        headers,
        body: Vec::new(),
        status,
        code,
        param: None,
    };
    let auth = server.auth();
    let with = |extra: &[(&str, &str)]| {
        let mut headers = auth.clone();
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        headers
    };
    let more = vec![
        get(
            "GET on a POST route",
            "/v1/chat/completions",
            405,
            "method_not_allowed",
            with(&[]),
        ),
        get(
            "unknown model by id",
            "/v1/models/no-such-model",
            404,
            "model_not_found",
            with(&[]),
        ),
        get(
            "foreign Host",
            "/v1/models",
            403,
            "host_not_allowed",
            with(&[("Host", "evil.example")]),
        ),
        get(
            "foreign Host with our port",
            "/v1/models",
            403,
            "host_not_allowed",
            with(&[(
                "Host",
                &format!("attacker.example:{}", server.address.port()),
            )]),
        ),
        get(
            "foreign Origin",
            "/v1/models",
            403,
            "origin_not_allowed",
            with(&[("Origin", "http://evil.example")]),
        ),
        get(
            "null Origin",
            "/v1/models",
            403,
            "origin_not_allowed",
            with(&[("Origin", "null")]),
        ),
        get(
            "missing API key",
            "/v1/models",
            401,
            "invalid_api_key",
            Vec::new(),
        ),
        get(
            "wrong API key",
            "/v1/models",
            401,
            "invalid_api_key",
            vec![("Authorization".into(), "Bearer sk-wrong".into())],
        ),
        get(
            "Basic instead of Bearer",
            "/v1/models",
            401,
            "invalid_api_key",
            vec![("Authorization".into(), format!("Basic {KEY}"))],
        ),
        get(
            "metrics without a key",
            "/metrics",
            401,
            "invalid_api_key",
            Vec::new(),
        ),
        get(
            "history without a key",
            "/api/conversations",
            401,
            "invalid_api_key",
            Vec::new(),
        ),
        get(
            "settings with a wrong key",
            "/api/settings",
            401,
            "invalid_api_key",
            vec![("Authorization".into(), "Bearer sk-wrong".into())],
        ),
    ];
    cases.extend(more);
    cases.push(Case {
        name: "foreign-origin preflight",
        method: "OPTIONS",
        path: "/v1/chat/completions",
        headers: vec![
            ("Origin".into(), "https://evil.example".into()),
            ("Access-Control-Request-Method".into(), "POST".into()),
        ],
        body: Vec::new(),
        status: 403,
        code: "origin_not_allowed",
        param: None,
    });
    cases
}
