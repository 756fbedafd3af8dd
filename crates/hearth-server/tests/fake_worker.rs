//! The server's streaming paths against a scripted fake worker (the fast tier: no model, no
//! llama.cpp): a real server from [`hearth_server::start`] on a loopback port, real HTTP, a
//! real SQLite history, and a worker process that plays errors, crashes and slow answers on
//! cue. This test binary is also the worker (`hearth_testkit::fake_worker`).

use std::time::{Duration, Instant};

use hearth_protocol::{ErrorKind, FinishReason};
use hearth_server::{start, RunningServer, ServerOptions, STREAMING_SAVE_INTERVAL};
use hearth_supervisor::{WorkerCommand, WORKER_EXIT_GRACE};
use hearth_testkit::fake_worker::{
    answer, logged_pids, run_tests_or_worker, thinking_answer, Action, FakeWorker, Script,
};
use hearth_testkit::http_client::{Client, SseStream};
use serde_json::{json, Value};

/// The access token of every fake server (`/api/*` always needs a key or a token).
const ACCESS_TOKEN: &str = "fake-server-access-token";

fn main() {
    run_tests_or_worker(&[
        (
            "an_error_mid_stream_ends_the_sse_stream_without_done",
            an_error_mid_stream_ends_the_sse_stream_without_done,
        ),
        (
            "a_crash_mid_stream_ends_it_with_an_error_and_the_next_request_is_answered",
            a_crash_mid_stream_ends_it_with_an_error_and_the_next_request_is_answered,
        ),
        (
            "an_error_before_the_first_token_is_an_http_error",
            an_error_before_the_first_token_is_an_http_error,
        ),
        (
            "a_streaming_answer_is_saved_while_it_streams",
            a_streaming_answer_is_saved_while_it_streams,
        ),
        (
            "a_conversation_answer_that_fails_is_saved_as_an_error",
            a_conversation_answer_that_fails_is_saved_as_an_error,
        ),
        (
            "an_answer_edited_away_while_it_streams_ends_with_answer_removed",
            an_answer_edited_away_while_it_streams_ends_with_answer_removed,
        ),
        (
            "an_idle_unload_leaves_no_process_behind_even_a_stuck_one",
            an_idle_unload_leaves_no_process_behind_even_a_stuck_one,
        ),
        (
            "thinking_never_reaches_content_whole_streamed_raw_or_saved",
            thinking_never_reaches_content_whole_streamed_raw_or_saved,
        ),
        (
            "the_tool_call_parser_sees_the_answer_not_the_thinking",
            the_tool_call_parser_sees_the_answer_not_the_thinking,
        ),
    ]);
}

/// A server in a runtime of its own, serving one fake model from a temporary data folder.
struct FakeServer {
    client: Client,
    server: Option<RunningServer>,
    runtime: tokio::runtime::Runtime,
    _data: tempfile::TempDir,
}

impl FakeServer {
    fn start(script: Script) -> FakeServer {
        Self::start_with(script, |_| {})
    }

    /// [`FakeServer::start`], with `adjust` changing the server's options first.
    fn start_with(script: Script, adjust: impl FnOnce(&mut ServerOptions)) -> FakeServer {
        let data = tempfile::tempdir().unwrap();
        // The fake worker never reads it; the server only needs a file to serve by name.
        let model = data.path().join("fake.gguf");
        std::fs::write(&model, b"GGUF").unwrap();
        let parts = FakeWorker::command_parts(&script);
        let worker = WorkerCommand {
            program: parts.program,
            args: parts.args,
            envs: parts.envs,
        };
        let mut options = ServerOptions::new(data.path(), worker);
        options.port = 0;
        options.models = vec![model.to_string_lossy().into_owned()];
        // As `hearth serve`: `/api/*` needs the access token.
        options.access_token = Some(ACCESS_TOKEN.to_string());
        adjust(&mut options);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(start(options)).expect("the server starts");
        let client = Client {
            address: server.local_addr(),
            api_key: Some(ACCESS_TOKEN.to_string()),
        };
        let fake = FakeServer {
            client,
            server: Some(server),
            runtime,
            _data: data,
        };
        fake.wait_ready();
        fake
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.client.get("/health").status != 200 {
            assert!(Instant::now() < deadline, "the fake model never loaded");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn chat_stream(&self) -> SseStream {
        let body = json!({
            "model": self.client.model_id(),
            "stream": true,
            "messages": [{"role": "user", "content": "hi"}],
        });
        SseStream::open(&self.client, "/v1/chat/completions", &body)
    }

    fn new_conversation(&self) -> String {
        let created = self
            .client
            .post_json("/api/conversations", &json!({"title": "t"}));
        assert_eq!(created.status, 201, "{}", created.text());
        let id = &created.json()["id"];
        id.as_str().map_or_else(|| id.to_string(), str::to_string)
    }

    /// Sends `content` to conversation `id` and opens its answer's event stream.
    fn send_message(&self, id: &str, content: &str) -> SseStream {
        SseStream::open(
            &self.client,
            &format!("/api/conversations/{id}/messages"),
            &json!({ "content": content }),
        )
    }

    fn conversation(&self, id: &str) -> Value {
        self.client.get(&format!("/api/conversations/{id}")).json()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let stopped = self.runtime.block_on(server.shutdown());
            // A server that fails to stop cleanly fails the test that owns it (unless that
            // test is failing already: a second panic would abort every test).
            if !std::thread::panicking() {
                stopped.expect("the server stops");
            }
        }
    }
}

fn parse(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

fn an_error_mid_stream_ends_the_sse_stream_without_done() {
    let server = FakeServer::start(Script::generating(vec![
        Action::Started { prompt_tokens: 3 },
        Action::Token { text: "Hel".into() },
        Action::Error {
            kind: ErrorKind::DecodeFailed,
            message: "llama_decode failed".into(),
        },
    ]));
    let stream = server.chat_stream();
    assert_eq!(stream.status, 200);
    let events = stream.collect();
    assert!(!events.iter().any(|data| data == "[DONE]"), "{events:?}");
    let chunks = parse(&events);
    // The role chunk, the text, then the error object as the last event.
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hel");
    let last = chunks.last().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("llama_decode failed")),
        "{last}"
    );
    assert_eq!(
        server
            .client
            .metric("hearth_stream_errors_total")
            .unwrap_or_default(),
        1.0
    );
}

fn a_crash_mid_stream_ends_it_with_an_error_and_the_next_request_is_answered() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let server = FakeServer::start(
        Script {
            generations: vec![
                vec![
                    Action::Started { prompt_tokens: 3 },
                    Action::Token { text: "a".into() },
                    Action::Sleep { ms: 50 },
                    Action::Abort,
                ],
                answer(&["after"]),
            ],
            ..Script::default()
        }
        .logging_to(log.path()),
    );
    let chunks = parse(&server.chat_stream().collect());
    let last = chunks.last().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("crashed")),
        "{last}"
    );
    let chunks = parse(&server.chat_stream().collect());
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "after");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

fn an_error_before_the_first_token_is_an_http_error() {
    let server = FakeServer::start(Script::generating(vec![Action::Error {
        kind: ErrorKind::ContextLengthExceeded,
        message: "the prompt is longer than the context".into(),
    }]));
    let body = json!({
        "model": server.client.model_id(),
        "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let response = server.client.post_json("/v1/chat/completions", &body);
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(
        response.json()["error"]["code"],
        "context_length_exceeded",
        "{}",
        response.text()
    );
}

fn a_streaming_answer_is_saved_while_it_streams() {
    // Pauses of several save intervals between the tokens and before the end.
    let server = FakeServer::start(Script::generating(vec![
        Action::Started { prompt_tokens: 3 },
        Action::Token {
            text: "first".into(),
        },
        Action::Sleep { ms: 1000 },
        Action::Token {
            text: " second".into(),
        },
        Action::Sleep { ms: 2000 },
        Action::Done {
            finish_reason: FinishReason::Stop,
        },
    ]));
    let id = server.new_conversation();
    let mut stream = server.send_message(&id, "hello");
    assert_eq!(stream.status, 200);
    let start: Value = serde_json::from_str(&stream.next_data().unwrap()).unwrap();
    assert_eq!(start["type"], "start");
    for expected in ["first", " second"] {
        let token: Value = serde_json::from_str(&stream.next_data().unwrap()).unwrap();
        assert_eq!(token["text"], expected);
    }
    // Within about one save interval of the second token, the partial answer is in the
    // history, still streaming (the answer ends 2 s later).
    let deadline = Instant::now() + STREAMING_SAVE_INTERVAL * 3;
    let saved = loop {
        let messages = server.conversation(&id)["messages"].clone();
        let answer = messages[1].clone();
        if answer["content"] == "first second" {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "not saved while streaming: {messages}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(saved["status"], "streaming");
    let rest = parse(&stream.collect());
    let done = rest.last().unwrap();
    assert_eq!(done["type"], "done", "{rest:?}");
    assert_eq!(done["message"]["content"], "first second");
    let answer = &server.conversation(&id)["messages"][1];
    assert_eq!(answer["status"], "complete");
    assert_eq!(answer["content"], "first second");
}

fn a_conversation_answer_that_fails_is_saved_as_an_error() {
    let server = FakeServer::start(Script::generating(vec![
        Action::Started { prompt_tokens: 3 },
        Action::Token {
            text: "partial".into(),
        },
        Action::Exit { code: 3 },
    ]));
    let id = server.new_conversation();
    let events = parse(&server.send_message(&id, "hello").collect());
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{events:?}");
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("code 3")),
        "{last}"
    );
    assert_eq!(last["message"]["status"], "error");
    // What was written before the crash is kept.
    let answer = &server.conversation(&id)["messages"][1];
    assert_eq!(answer["status"], "error");
    assert_eq!(answer["content"], "partial");
}

fn an_answer_edited_away_while_it_streams_ends_with_answer_removed() {
    let log = tempfile::NamedTempFile::new().unwrap();
    // The first answer writes slowly until cancelled; the edit's answer is quick.
    let server = FakeServer::start(
        Script {
            generations: vec![
                vec![
                    Action::Started { prompt_tokens: 3 },
                    Action::Token { text: "old".into() },
                    Action::Sleep { ms: 300 },
                    Action::Token {
                        text: " more".into(),
                    },
                    Action::Sleep { ms: 300 },
                    Action::Token {
                        text: " more".into(),
                    },
                    Action::WaitForCancel,
                ],
                answer(&["new"]),
            ],
            ..Script::default()
        }
        .logging_to(log.path()),
    );
    let id = server.new_conversation();
    let mut first = server.send_message(&id, "hello");
    let start: Value = serde_json::from_str(&first.next_data().unwrap()).unwrap();
    let question = start["user_message"]["id"].clone();
    let edited = parse(
        &SseStream::open(
            &server.client,
            &format!("/api/conversations/{id}/messages/{question}/edit"),
            &json!({"content": "hello again"}),
        )
        .collect(),
    );
    assert_eq!(edited.last().unwrap()["type"], "done", "{edited:?}");
    let rest = parse(&first.collect());
    let last = rest.last().unwrap();
    assert_eq!(last["type"], "error", "{rest:?}");
    assert_eq!(last["error"]["code"], "answer_removed");
    // The removed answer's generation was cancelled in the worker, and the history holds the
    // edited question and its new answer only.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let requests = std::fs::read_to_string(log.path()).unwrap();
        if requests.contains("\"type\":\"cancel\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no cancel sent: {requests}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let messages = server.conversation(&id)["messages"].clone();
    let contents: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["hello again", "new"]);
}

fn an_idle_unload_leaves_no_process_behind_even_a_stuck_one() {
    // A worker stuck in a step that never ends ignores its stdin closing.
    let log = tempfile::NamedTempFile::new().unwrap();
    let script = Script {
        ignore_stdin_close: true,
        ..Script::generating(answer(&["hi"]))
    }
    .logging_to(log.path());
    let server = FakeServer::start_with(script, |options| {
        options.idle_unload = Some(Duration::from_millis(300));
    });
    let chunks = parse(&server.chat_stream().collect());
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    let workers = logged_pids(log.path());
    assert_eq!(workers.len(), 1, "one fake worker ran");
    // The idle unload, the grace given to the worker, then the kill.
    let deadline = Instant::now() + Duration::from_millis(300) + WORKER_EXIT_GRACE * 4;
    while workers
        .iter()
        .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "a worker outlived its idle unload: {workers:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A thinking model's output, in pieces that cut both tags: the prompt opened `<think>`.
const THINKING_PIECES: &[&str] = &[
    "\nLet me",
    " think.",
    "\n</th",
    "ink>\n\n",
    "The answer",
    " is 4.",
];

fn thinking_never_reaches_content_whole_streamed_raw_or_saved() {
    let server = FakeServer::start(Script::generating(thinking_answer(THINKING_PIECES)));
    let model = server.client.model_id();
    let chat = |extra: Value| {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": "2+2?"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };

    // Whole: the thinking apart, counted in the usage.
    let whole = server
        .client
        .post_json("/v1/chat/completions", &chat(json!({})));
    assert_eq!(whole.status, 200, "{}", whole.text());
    let whole = whole.json();
    let message = &whole["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], "Let me think.");
    assert_eq!(message["content"], "The answer is 4.");
    assert_eq!(
        whole["usage"]["completion_tokens_details"]["reasoning_tokens"],
        4
    );

    // Streamed: `delta.reasoning_content`, then `delta.content`, never a tag in either.
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let chunks = parse(&SseStream::open(&server.client, "/v1/chat/completions", &body).collect());
    let delta = |key: &str| -> Vec<String> {
        chunks
            .iter()
            .filter_map(|chunk| chunk["choices"][0]["delta"][key].as_str())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(delta("reasoning_content").concat(), "Let me think.");
    assert_eq!(delta("content").concat(), "The answer is 4.");
    let last_reasoning = chunks
        .iter()
        .rposition(|chunk| chunk["choices"][0]["delta"]["reasoning_content"].is_string())
        .unwrap();
    let first_content = chunks
        .iter()
        .position(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
        })
        .unwrap();
    assert!(last_reasoning < first_content, "{chunks:?}");
    assert_eq!(
        chunks.last().unwrap()["usage"]["completion_tokens_details"]["reasoning_tokens"],
        4
    );

    // `reasoning_format: "none"`: inline, with the tag the prompt opened.
    let raw = server
        .client
        .post_json(
            "/v1/chat/completions",
            &chat(json!({"reasoning_format": "none"})),
        )
        .json();
    assert_eq!(
        raw["choices"][0]["message"]["content"],
        "<think>\n\nLet me think.\n</think>\n\nThe answer is 4."
    );
    assert!(raw["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());

    // A conversation: `reasoning` events, then `token` events; saved apart with its count.
    let id = server.new_conversation();
    let events = parse(&server.send_message(&id, "2+2?").collect());
    let texts = |kind: &str| -> String {
        events
            .iter()
            .filter(|event| event["type"] == kind)
            .filter_map(|event| event["text"].as_str())
            .collect()
    };
    assert_eq!(texts("reasoning"), "Let me think.");
    assert_eq!(texts("token"), "The answer is 4.");
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done", "{events:?}");
    let saved = &server.conversation(&id)["messages"][1];
    assert_eq!(saved["content"], "The answer is 4.");
    assert_eq!(saved["reasoning"], "Let me think.");
    assert_eq!(saved["reasoning_tokens"], 4);
    assert!(saved["reasoning_ms"].is_u64(), "{saved}");
    assert_eq!(done["message"], *saved);
}

fn the_tool_call_parser_sees_the_answer_not_the_thinking() {
    let call = r#"<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>"#;
    let thought = r#"Maybe <tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>? No, Paris."#;
    let server = FakeServer::start(Script::generating(thinking_answer(&[
        thought,
        "</think>\n",
        call,
    ])));
    let body = json!({
        "model": server.client.model_id(),
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    });
    let answer = server
        .client
        .post_json("/v1/chat/completions", &body)
        .json();
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], thought);
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{message}");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
}
