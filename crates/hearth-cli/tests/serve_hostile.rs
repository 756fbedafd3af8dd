//! `hearth serve` against malformed and hostile requests, on the real SmolLM2 model: every
//! case is checked for its status and OpenAI error object (code, param, no file-system path
//! in the message), then a normal request must still work. Also: a full queue answers 503
//! with `Retry-After` and a client that leaves while queued frees its place; an idle model
//! unloads and comes back on demand (503 while loading); unsafe options are refused before
//! the server binds.
//!
//! The table of hostile requests and what each must get back is in `serve_hostile/cases.rs`.

#[path = "serve_hostile/cases.rs"]
mod cases;
mod serve_support;

use std::time::Duration;

use cases::{hostile_cases, json_headers};
use serde_json::{json, Value};
use serve_support::{
    check_error, request, request_raw, request_with_large_body, SseStream, TestServer,
};

const KEY: &str = "sk-hearth-hostile-test";
const ALLOWED_ORIGIN: &str = "http://localhost:5173";
/// Small, so a long prompt overflows it quickly.
const CONTEXT_PER_REQUEST: &str = "512";

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
