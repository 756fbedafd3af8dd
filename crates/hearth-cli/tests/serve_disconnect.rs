//! Client disconnects on the real server and model: four streams run at once (`--parallel
//! 4`), two clients drop in the middle, the other two finish with complete answers, and
//! `/metrics` shows no sequence left running. The dropped answers were asked for far more
//! tokens than the kept ones, so had their cancellation failed they would still be running
//! when the kept ones end. A non-streaming client that leaves frees its sequence too.

mod serve_support;

use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use serve_support::{SseStream, TestServer};

/// Tokens each kept stream generates.
const KEPT_MAX_TOKENS: u64 = 48;
/// Tokens each dropped stream would generate if nobody cancelled it.
const DROPPED_MAX_TOKENS: u64 = 900;
/// Content chunks every stream must have received before two clients drop.
const CHUNKS_BEFORE_DROP: usize = 3;
/// How long a cancelled sequence may take to leave the scheduler.
const CANCEL_DEADLINE: Duration = Duration::from_secs(5);

enum Outcome {
    Dropped,
    Finished(Vec<Value>),
}

#[test]
fn dropped_streams_free_their_sequences_and_the_others_finish_whole() {
    let server = TestServer::start(&["--parallel", "4", "--ctx", "1024"]);
    server.wait_ready();
    let model = server.model_id();
    let running = format!("hearth_running_sequences{{model=\"{model}\"}}");

    let prompts = [
        "Tell me about the sea.",
        "Tell me about mountains.",
        "Tell me about forests.",
        "Tell me about deserts.",
    ];
    let (progress_sender, progress) = mpsc::channel::<usize>();
    std::thread::scope(|scope| {
        let mut drop_signals = Vec::new();
        let mut clients = Vec::new();
        for (index, prompt) in prompts.iter().enumerate() {
            let keep = index % 2 == 0;
            let body = json!({
                "model": model, "stream": true, "stream_options": {"include_usage": true},
                "ignore_eos": true, "temperature": 0,
                "max_tokens": if keep { KEPT_MAX_TOKENS } else { DROPPED_MAX_TOKENS },
                "messages": [{"role": "user", "content": prompt}],
            });
            let (drop_sender, drop_signal) = mpsc::channel::<()>();
            drop_signals.push(drop_sender);
            let progress_sender = progress_sender.clone();
            let server = &server;
            clients.push(scope.spawn(move || {
                let mut stream = SseStream::open(server, "/v1/chat/completions", &body);
                assert_eq!(stream.status, 200);
                let mut events = Vec::new();
                while events.len() < CHUNKS_BEFORE_DROP + 1 {
                    let data = stream.next_data().expect("the stream ended early");
                    events.push(serde_json::from_str::<Value>(&data).unwrap());
                }
                progress_sender.send(index).unwrap();
                if !keep {
                    drop_signal.recv().unwrap();
                    drop(stream);
                    return Outcome::Dropped;
                }
                while let Some(data) = stream.next_data() {
                    if data == "[DONE]" {
                        events.push(Value::String(data));
                        break;
                    }
                    events.push(serde_json::from_str(&data).unwrap());
                }
                Outcome::Finished(events)
            }));
        }
        // All four are streaming at once; then two clients go away.
        for _ in 0..prompts.len() {
            progress
                .recv_timeout(Duration::from_secs(120))
                .expect("a stream never started");
        }
        for signal in &drop_signals {
            let _ = signal.send(());
        }
        for (index, client) in clients.into_iter().enumerate() {
            match client.join().expect("a client thread failed") {
                Outcome::Dropped => assert!(index % 2 == 1),
                Outcome::Finished(events) => check_complete(&events, &model),
            }
        }
    });

    assert_eq!(
        server.wait_for_metric(&running, 0.0, CANCEL_DEADLINE),
        Some(0.0),
        "a dropped stream is still running\n{}",
        server.get("/metrics").text()
    );
    assert_eq!(
        server.metric(&format!(
            "hearth_client_disconnects_total{{model=\"{model}\"}}"
        )),
        Some(2.0)
    );
    assert_eq!(
        server.metric(&format!(
            "hearth_requests_finished_total{{model=\"{model}\",finish_reason=\"length\"}}"
        )),
        Some(2.0),
        "only the kept streams finished"
    );

    // A non-streaming client that leaves while its long answer is being generated.
    let address = server.address;
    let body = json!({"model": model, "ignore_eos": true, "max_tokens": DROPPED_MAX_TOKENS,
                      "messages": [{"role": "user", "content": "Write a long essay."}]})
    .to_string();
    {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        assert_eq!(
            server.wait_for_metric(&running, 1.0, Duration::from_secs(60)),
            Some(1.0),
            "the non-streaming request never started"
        );
    }
    assert_eq!(
        server.wait_for_metric(&running, 0.0, CANCEL_DEADLINE),
        Some(0.0),
        "the non-streaming request kept running after its client left"
    );

    // The server is unharmed.
    let response = server.post_json(
        "/v1/chat/completions",
        &json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
}

/// A whole stream: one id, the role first, text, `finish_reason` `length` after exactly
/// `KEPT_MAX_TOKENS` tokens, the usage chunk with empty choices, then `[DONE]`.
fn check_complete(events: &[Value], model: &str) {
    assert_eq!(events.last(), Some(&Value::String("[DONE]".into())));
    let chunks = &events[..events.len() - 1];
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(chunks.iter().all(|c| c["id"] == id && c["model"] == model));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter(|choice| !choice["finish_reason"].is_null())
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["finish_reason"], "length");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], KEPT_MAX_TOKENS);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|choice| choice["delta"]["content"].as_str())
        .collect();
    assert!(!text.trim().is_empty(), "no text");
}

#[test]
fn a_client_that_leaves_during_prefill_frees_its_sequence() {
    let server = TestServer::start(&["--parallel", "1", "--ctx", "4096"]);
    server.wait_ready();
    let model = server.model_id();
    let running = format!("hearth_running_sequences{{model=\"{model}\"}}");
    let steps = format!("hearth_engine_steps_total{{model=\"{model}\"}}");
    let steps_before = server.metric(&steps).expect("no step counter");
    // About 3860 tokens: 8 prefill steps of 512 tokens. Time on this machine varies tenfold
    // with load, so the check counts the engine's steps, not seconds.
    let long_prompt = "The history of the river and the town beside it. ".repeat(350);
    const PROMPT_STEPS: f64 = 8.0;
    let body = json!({"model": model, "stream": true, "max_tokens": 8,
                      "messages": [{"role": "user", "content": long_prompt}]});
    let mut stream = SseStream::open(&server, "/v1/chat/completions", &body);
    assert_eq!(stream.status, 200);
    // The role chunk is sent when the request gets its slot, before the prompt is computed.
    let first: Value = serde_json::from_str(&stream.next_data().unwrap()).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    drop(stream);
    assert_eq!(
        server.wait_for_metric(&running, 0.0, Duration::from_secs(600)),
        Some(0.0),
        "the sequence never left"
    );
    let steps_taken = server.metric(&steps).unwrap() - steps_before;
    assert!(
        steps_taken < PROMPT_STEPS / 2.0,
        "the engine ran {steps_taken} steps for a client that left during its prefill"
    );
    assert_eq!(
        server.metric(&format!(
            "hearth_client_disconnects_total{{model=\"{model}\"}}"
        )),
        Some(1.0)
    );
}
