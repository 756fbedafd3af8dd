//! `hearth serve` against malformed and hostile requests, on the real SmolLM2 model: every
//! case is checked for its status and OpenAI error object (code, param, no file-system path
//! in the message), then a normal request must still work. Also: a full queue answers 503
//! with `Retry-After` and a client that leaves while queued frees its place; an idle model
//! unloads and comes back on demand (503 while loading); unsafe options are refused before
//! the server binds.

mod serve_support;

use std::time::Duration;

use serde_json::{json, Value};
use serve_support::{
    check_error, request, request_raw, request_with_large_body, SseStream, TestServer,
};

const KEY: &str = "sk-hearth-hostile-test";
const ALLOWED_ORIGIN: &str = "http://localhost:5173";
/// Small, so a long prompt overflows it quickly.
const CONTEXT_PER_REQUEST: &str = "512";

/// One hostile request and what must come back.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    param: Option<&'static str>,
}

fn json_headers(server: &TestServer) -> Vec<(String, String)> {
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
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
    });
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value.clone();
        }
    }
    body.to_string().into_bytes()
}

fn completion(model: &str, changes: Value) -> Vec<u8> {
    let mut body = json!({"model": model, "prompt": "Once upon a time", "max_tokens": 4});
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

fn hostile_cases(server: &TestServer, model: &str) -> Vec<Case> {
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

#[test]
fn hostile_requests_get_exact_errors_and_the_server_still_answers() {
    let server = TestServer::start(&[
        "--api-key",
        KEY,
        "--allowed-origin",
        ALLOWED_ORIGIN,
        "--ctx",
        CONTEXT_PER_REQUEST,
        "--parallel",
        "1",
    ]);
    // A client sending its headers one byte every 200 ms (they would take a minute) while the
    // cases below run: the server drops it at its 10 s header timeout.
    let slow_header = slow_header_client(server.address);
    server.wait_ready();
    let model = server.model_id();

    let cases = hostile_cases(&server, &model);
    for case in &cases {
        let headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let response = request(server.address, case.method, case.path, &headers, &case.body);
        check_error(case.name, &response, case.status, case.code, case.param);
        if case.code == "context_length_exceeded" {
            let body = response.json();
            let prompt_tokens = body["error"]["n_prompt_tokens"].as_u64().unwrap();
            let n_ctx = body["error"]["n_ctx"].as_u64().unwrap();
            assert!(prompt_tokens > n_ctx, "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&prompt_tokens.to_string())
                    && message.contains(&n_ctx.to_string())
            );
        }
        if case.name == "path as model" {
            assert!(
                !response.text().contains("passwd"),
                "the path is not echoed"
            );
        }
    }

    // A 50 MB body is refused with 413, read and discarded so the client sees it.
    let headers = json_headers(&server);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = request_with_large_body(
        server.address,
        "/v1/chat/completions",
        &headers,
        50 * 1024 * 1024,
    );
    check_error("50 MB body", &response, 413, "request_too_large", None);
    // Chunked, with no declared length: refused once the limit is crossed.
    let mut chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.address
    )
    .into_bytes();
    for _ in 0..10 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 1 << 20));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let response = request_raw(server.address, &chunked);
    check_error(
        "10 MB chunked body",
        &response,
        413,
        "request_too_large",
        None,
    );
    let counted = cases.len() + 2;
    assert!(counted >= 30, "only {counted} hostile requests");

    // The allowed origin works and is named, never with credentials.
    let response = request(
        server.address,
        "GET",
        "/v1/models",
        &[
            ("Authorization", &format!("Bearer {KEY}")),
            ("Origin", ALLOWED_ORIGIN),
        ],
        b"",
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert_eq!(response.header("access-control-allow-credentials"), None);

    // After all that, a normal request still works.
    let response = server.post_json(
        "/v1/chat/completions",
        &json!({"model": model, "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "temperature": 0, "max_tokens": 16}),
    );
    assert_eq!(
        response.status,
        200,
        "{}\n{}",
        response.text(),
        server.stderr()
    );
    let body = response.json();
    assert!(!body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(server.get("/health").status, 200);
    let dropped_after = slow_header.join().unwrap();
    assert!(
        dropped_after >= Duration::from_secs(9) && dropped_after < Duration::from_secs(14),
        "the slow-header client was dropped after {dropped_after:?} (bound: 10 s)"
    );
    println!("{counted} hostile requests answered with the expected status and error object");
}

/// Connects and trickles a request head one byte every 200 ms; returns how long the server
/// kept the connection (until it closed it, or 30 s at most).
fn slow_header_client(address: std::net::SocketAddr) -> std::thread::JoinHandle<Duration> {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let mut reader = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let head = format!(
            "GET /v1/models HTTP/1.1\r\nHost: {address}\r\nX-Slow: {}",
            "a".repeat(300)
        );
        for byte in head.bytes() {
            if stream.write_all(&[byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    std::thread::spawn(move || {
        reader
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buffer = [0u8; 1024];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
}

#[test]
fn a_full_queue_is_503_with_retry_after_and_a_queued_client_that_leaves_frees_its_place() {
    let server = TestServer::start(&["--parallel", "1", "--max-queue", "1", "--ctx", "2048"]);
    server.wait_ready();
    let model = server.model_id();
    let long_answer = |content: &str| {
        json!({"model": model, "stream": true, "ignore_eos": true, "max_tokens": 1500,
               "messages": [{"role": "user", "content": content}]})
    };
    // One running (it has sent a token)...
    let mut running = SseStream::open(
        &server,
        "/v1/chat/completions",
        &long_answer("Tell a story."),
    );
    assert_eq!(running.status, 200);
    assert!(running.next_data().is_some(), "no first chunk");
    // ...one waiting for the only slot (no response yet: it waits for Started)...
    let address = server.address;
    let queued_body = long_answer("Tell another story.").to_string();
    let queued = std::thread::spawn(move || {
        let stream = std::net::TcpStream::connect(address).unwrap();
        let mut writer = stream.try_clone().unwrap();
        use std::io::Write;
        let _ = write!(
            writer,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n{queued_body}",
            queued_body.len()
        );
        stream
    });
    let queued_stream = queued.join().unwrap();
    let series = format!("hearth_queue_depth{{model=\"{model}\"}}");
    assert_eq!(
        server.wait_for_metric(&series, 1.0, Duration::from_secs(30)),
        Some(1.0)
    );
    // ...so a third is refused at once.
    let response = server.post_json("/v1/chat/completions", &long_answer("And another."));
    check_error("queue full", &response, 503, "queue_full", None);
    assert_eq!(response.header("retry-after"), Some("1"));

    // The queued client leaves: its place is freed without it ever getting a slot.
    drop(queued_stream);
    assert_eq!(
        server.wait_for_metric(&series, 0.0, Duration::from_secs(10)),
        Some(0.0)
    );
    drop(running);
    let running_series = format!("hearth_running_sequences{{model=\"{model}\"}}");
    assert_eq!(
        server.wait_for_metric(&running_series, 0.0, Duration::from_secs(10)),
        Some(0.0)
    );
}

#[test]
fn idle_models_unload_and_load_again_on_demand_with_503_meanwhile() {
    let server = TestServer::start(&["--idle-unload", "1", "--load-wait", "0"]);
    server.wait_ready();
    let model = server.model_id();
    let ask =
        json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
    // As an SDK does: retry a 503 after its Retry-After (the model may unload between two
    // requests on a slow machine, since it idles for one second only).
    let ask_until_answered = || {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let response = server.post_json("/v1/chat/completions", &ask);
            if response.status != 503 || std::time::Instant::now() >= deadline {
                return response;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(ask_until_answered().status, 200);
    assert_eq!(
        server.wait_for_metric("hearth_models_loaded", 0.0, Duration::from_secs(15)),
        Some(0.0),
        "the idle model was not unloaded"
    );
    // The next request starts the load and, not waiting at all (--load-wait 0), gets 503.
    let response = server.post_json("/v1/chat/completions", &ask);
    check_error("loading", &response, 503, "model_loading", None);
    assert_eq!(response.header("retry-after"), Some("1"));
    let response = ask_until_answered();
    assert_eq!(response.status, 200, "{}", response.text());
    let loads = server
        .metric(&format!("hearth_model_loads_total{{model=\"{model}\"}}"))
        .unwrap_or(0.0);
    assert!(loads >= 2.0, "{loads} loads");
}

#[test]
fn unsafe_options_are_refused_before_binding() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("serve")
            .args(args)
            .env("HEARTH_HOME", home.path())
            .env_remove("HEARTH_API_KEY")
            .output()
            .unwrap()
    };
    let output = run(&["--host", "0.0.0.0", "--port", "0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--api-key"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing was bound or printed");

    let output = run(&["--port", "0", "--allowed-origin", "*"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("wildcard"));

    let output = run(&["--port", "0", "--model", "no-such-model"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-model"));
}

#[cfg(target_os = "linux")]
#[test]
fn a_crash_mid_stream_sends_an_error_event_and_the_next_request_works() {
    let server = TestServer::start(&[]);
    server.wait_ready();
    let model = server.model_id();
    let body = json!({"model": model, "stream": true, "ignore_eos": true, "max_tokens": 2000,
                      "messages": [{"role": "user", "content": "Tell a long story."}]});
    let mut stream = SseStream::open(&server, "/v1/chat/completions", &body);
    assert_eq!(stream.status, 200);
    for _ in 0..3 {
        assert!(stream.next_data().is_some());
    }
    let workers = server.worker_pids();
    assert_eq!(workers.len(), 1, "one engine worker: {workers:?}");
    let killed = std::process::Command::new("kill")
        .args(["-9", &workers[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest = stream.collect();
    let last: Value = serde_json::from_str(rest.last().expect("no event after the crash")).unwrap();
    assert_eq!(last["error"]["code"], "model_crashed", "{last}");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("crashed"));
    assert!(
        !rest.iter().any(|data| data == "[DONE]"),
        "a failed stream has no [DONE]"
    );
    // The supervisor starts a fresh worker and reloads the model for the next request.
    let response = server.post_json(
        "/v1/chat/completions",
        &json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(server.metric("hearth_stream_errors_total"), Some(1.0));
}
