//! Conversation history end to end: the real `hearth serve` binary, the real SmolLM2 model,
//! real HTTP. A message's answer streams as server-sent events and is found again after the
//! server restarts; a server killed with SIGKILL mid-answer keeps the answer up to about the
//! last second.

mod serve_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use serve_support::{read_access_token, request, HttpResponse, LISTENING_PREFIX};

/// How long a server may take to print its address and load the model.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The server saves a streaming answer at least this often (`STREAMING_SAVE_INTERVAL` is
/// 500 ms); the SIGKILL test allows this much plus scheduling noise on a busy machine.
const MAX_LOST_MILLIS: i64 = 1_500;

/// `hearth serve` on a free port with `home` as its data directory; SIGKILLed when dropped.
struct Server {
    child: Child,
    address: SocketAddr,
    /// `Bearer <access token>`: `/api/*` needs it.
    auth: String,
}

impl Server {
    fn start(home: &Path) -> Server {
        let model = hearth_testkit::smollm2();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["serve", "--port", "0", "--model"])
            .arg(&model)
            .env("HEARTH_HOME", home)
            .env_remove("HEARTH_LOG")
            .env_remove("HEARTH_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start hearth serve");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix(LISTENING_PREFIX) {
                    let _ = sender.send(address.trim().to_string());
                }
            }
        });
        let address = receiver
            .recv_timeout(READY_TIMEOUT)
            .expect("hearth serve printed no address")
            .parse()
            .unwrap();
        let auth = format!("Bearer {}", read_access_token(home));
        let server = Server {
            child,
            address,
            auth,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while server.get("/health").status != 200 {
            assert!(Instant::now() < deadline, "the model never loaded");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn get(&self, path: &str) -> HttpResponse {
        request(
            self.address,
            "GET",
            path,
            &[("Authorization", &self.auth)],
            b"",
        )
    }

    fn post(&self, path: &str, body: &Value) -> HttpResponse {
        post(self.address, &self.auth, path, body)
    }

    /// A POST without a body.
    fn post_empty(&self, path: &str) -> HttpResponse {
        request(
            self.address,
            "POST",
            path,
            &[("Authorization", &self.auth)],
            b"",
        )
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(address: SocketAddr, auth: &str, path: &str, body: &Value) -> HttpResponse {
    request(
        address,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", auth),
        ],
        body.to_string().as_bytes(),
    )
}

/// The `data` of every event of a server-sent event stream.
/// A conversation whose greedy answer runs to 4,000 tokens (many seconds on 2 cores), asked
/// on a thread of its own so the test can act while it streams: its id and the client.
fn start_long_answer(server: &Server) -> (i64, std::thread::JoinHandle<HttpResponse>) {
    let created = server.post(
        "/api/conversations",
        &json!({"settings": {"temperature": 0, "max_tokens": 4000, "ignore_eos": true}}),
    );
    let id = created.json()["id"].as_i64().unwrap();
    let address = server.address;
    let auth = server.auth.clone();
    let client = std::thread::spawn(move || {
        post(
            address,
            &auth,
            &format!("/api/conversations/{id}/messages"),
            &json!({"content": "Write a very long story about a lighthouse."}),
        )
    });
    (id, client)
}

fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data:"))
        .map(|data| serde_json::from_str(data.trim()).expect("each event is JSON"))
        .collect()
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn an_answer_streams_and_is_found_after_a_restart() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path());
    let created = server.post(
        "/api/conversations",
        &json!({"settings": {"temperature": 0, "max_tokens": 24}}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["id"].as_i64().unwrap();

    let response = server.post(
        &format!("/api/conversations/{id}/messages"),
        &json!({"content": "What is the capital of France?"}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let events = sse_events(&response.text());
    assert_eq!(events[0]["type"], "start", "{events:?}");
    let streamed: String = events
        .iter()
        .filter(|event| event["type"] == "token")
        .map(|event| event["text"].as_str().unwrap())
        .collect();
    assert!(!streamed.is_empty(), "{events:?}");
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done", "{done}");
    assert_eq!(done["message"]["content"], streamed.as_str());
    assert_eq!(done["message"]["status"], "complete");
    assert!(done["message"]["metrics"]["ttft_ms"].as_f64().unwrap() > 0.0);
    assert!(
        done["message"]["metrics"]["generated_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    server.kill();

    let server = Server::start(home.path());
    let listed = server.get("/api/conversations").json();
    assert_eq!(listed["data"][0]["title"], "What is the capital of France?");
    let conversation = server.get(&format!("/api/conversations/{id}")).json();
    let messages = conversation["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{conversation}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], streamed.as_str());
    assert_eq!(messages[1]["status"], "complete");
    assert!(
        messages[1]["metrics"]["decode_tokens_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    // The next turn sees the history (the model answers it; the store keeps both turns).
    let second = server.post(
        &format!("/api/conversations/{id}/messages"),
        &json!({"content": "And of Italy?"}),
    );
    assert_eq!(second.status, 200);
    let conversation = server.get(&format!("/api/conversations/{id}")).json();
    assert_eq!(conversation["messages"].as_array().unwrap().len(), 4);
}

#[test]
fn sigkill_mid_answer_keeps_the_answer_up_to_about_the_last_second() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path());
    // The client runs on a thread; the server dies under it.
    let (id, client) = start_long_answer(&server);

    // Wait until the answer has been saved a few times, then kill the server.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    loop {
        let conversation = server.get(&format!("/api/conversations/{id}")).json();
        if let Some(answer) = conversation["messages"].get(1) {
            assert_eq!(answer["status"], "streaming", "{answer}");
            seen = answer["content"].as_str().unwrap().to_string();
        }
        if seen.len() > 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the answer was never saved");
        std::thread::sleep(Duration::from_millis(200));
    }
    let killed_at = now_millis();
    server.kill();
    let _ = client.join();

    let server = Server::start(home.path());
    let conversation = server.get(&format!("/api/conversations/{id}")).json();
    let messages = conversation["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{conversation}");
    let answer = &messages[1];
    let saved = answer["content"].as_str().unwrap();
    assert!(
        saved.starts_with(&seen),
        "the saved answer continues what was seen before the kill"
    );
    assert_eq!(answer["status"], "stopped", "a crash mid-answer is a stop");
    let last_save = answer["updated_at"].as_i64().unwrap();
    assert!(
        killed_at - last_save <= MAX_LOST_MILLIS,
        "the last save was {} ms before the kill",
        killed_at - last_save
    );
}

/// The events of one answering request, checked to end with `done`.
fn answered(response: HttpResponse) -> Vec<Value> {
    assert_eq!(response.status, 200, "{}", response.text());
    let events = sse_events(&response.text());
    assert_eq!(events[0]["type"], "start", "{events:?}");
    let done = events.last().unwrap();
    assert_eq!(done["type"], "done", "{done}");
    assert_eq!(done["message"]["status"], "complete", "{done}");
    events
}

#[test]
fn regenerate_and_edit_answer_again_and_drop_what_came_after() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path());
    let created = server.post(
        "/api/conversations",
        &json!({"settings": {"temperature": 0, "max_tokens": 16}}),
    );
    let id = created.json()["id"].as_i64().unwrap();
    let first = answered(server.post(
        &format!("/api/conversations/{id}/messages"),
        &json!({"content": "What is the capital of France?"}),
    ));
    let start = &first[0];
    assert_eq!(
        start["n_ctx"].as_u64(),
        Some(u64::from(hearth_protocol::DEFAULT_N_CTX)),
        "the start event tells the context one answer may fill: {start}"
    );
    assert!(start["prompt_tokens"].as_u64().unwrap() > 0);
    let question_id = start["user_message"]["id"].as_i64().unwrap();
    let first_answer = first.last().unwrap()["message"].clone();

    // Regenerate (no body): the same question answered again, greedy, so the same text, in
    // a new message that replaces the old one.
    let again = answered(server.post_empty(&format!("/api/conversations/{id}/regenerate")));
    assert_eq!(again[0]["user_message"]["id"], question_id);
    let second_answer = &again.last().unwrap()["message"];
    assert_ne!(second_answer["id"], first_answer["id"]);
    assert_eq!(second_answer["content"], first_answer["content"]);
    let messages = server.get(&format!("/api/conversations/{id}")).json()["messages"].clone();
    assert_eq!(messages.as_array().unwrap().len(), 2, "{messages}");
    assert_eq!(messages[1]["id"], second_answer["id"]);

    // A second turn, then an edit of the first question: everything after it goes.
    answered(server.post(
        &format!("/api/conversations/{id}/messages"),
        &json!({"content": "And of Italy?"}),
    ));
    let edited = answered(server.post(
        &format!("/api/conversations/{id}/messages/{question_id}/edit"),
        &json!({"content": "What is the capital of Japan?"}),
    ));
    assert_eq!(edited[0]["user_message"]["id"], question_id);
    assert_eq!(
        edited[0]["user_message"]["content"],
        "What is the capital of Japan?"
    );
    let edited_answer = &edited.last().unwrap()["message"];
    assert_ne!(edited_answer["content"], first_answer["content"]);
    let messages = server.get(&format!("/api/conversations/{id}")).json()["messages"].clone();
    let messages = messages.as_array().unwrap();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0]["content"], "What is the capital of Japan?");
    assert_eq!(messages[1]["id"], edited_answer["id"]);
    assert_eq!(messages[1]["status"], "complete");
}

/// The most a SIGTERM'd server may take to exit with an answer streaming: the answer stops at
/// once (well inside the 5 s grace other requests get) and the worker is shut down.
const STOP_TIMEOUT: Duration = Duration::from_secs(4);

#[test]
fn sigterm_mid_answer_stops_it_saves_it_as_stopped_and_exits_promptly() {
    let home = tempfile::tempdir().unwrap();
    let mut server = Server::start(home.path());
    let (id, client) = start_long_answer(&server);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let conversation = server.get(&format!("/api/conversations/{id}")).json();
        let saved = conversation["messages"][1]["content"]
            .as_str()
            .unwrap_or("")
            .len();
        if saved > 100 {
            break;
        }
        assert!(Instant::now() < deadline, "the answer was never saved");
        std::thread::sleep(Duration::from_millis(100));
    }
    let terminated = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < STOP_TIMEOUT,
            "the server did not exit within {STOP_TIMEOUT:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    // The client got the end of the stream: the answer, saved as stopped.
    let events = sse_events(&client.join().unwrap().text());
    let last = events.last().unwrap();
    assert_eq!(last["type"], "done", "{last}");
    assert_eq!(last["message"]["status"], "stopped");
    drop(server);

    let server = Server::start(home.path());
    let conversation = server.get(&format!("/api/conversations/{id}")).json();
    let answer = &conversation["messages"][1];
    assert_eq!(answer["status"], "stopped", "{answer}");
    assert_eq!(answer["content"], last["message"]["content"]);
}

#[test]
fn regenerating_while_an_answer_streams_ends_the_old_answer() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path());
    let (id, old_client) = start_long_answer(&server);
    let address = server.address;
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.get(&format!("/api/conversations/{id}")).json()["messages"][1]["content"]
        .as_str()
        .unwrap_or("")
        .len()
        < 50
    {
        assert!(Instant::now() < deadline, "the answer was never saved");
        std::thread::sleep(Duration::from_millis(100));
    }
    let shorter = request(
        address,
        "PATCH",
        &format!("/api/conversations/{id}"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &server.auth),
        ],
        json!({"settings": {"temperature": 0, "max_tokens": 8}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(shorter.status, 200, "{}", shorter.text());
    let again = answered(server.post_empty(&format!("/api/conversations/{id}/regenerate")));
    let new_answer = &again.last().unwrap()["message"];

    // The old answer's stream ends with an error instead of running to 4000 tokens.
    let old_events = sse_events(&old_client.join().unwrap().text());
    let last = old_events.last().unwrap();
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["error"]["code"], "answer_removed");
    let messages = server.get(&format!("/api/conversations/{id}")).json()["messages"].clone();
    let messages = messages.as_array().unwrap();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[1]["id"], new_answer["id"]);
    assert_eq!(messages[1]["status"], "complete");
}
