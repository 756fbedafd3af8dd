//! Remote providers end to end: a second `hearth serve` (with an API key, on the real SmolLM2
//! model) plays the remote of a first one that has no model of its own. The provider is added
//! with `hearth provider add … --api-key-env`; then the front server lists the remote's models,
//! streams a chat from it through `/v1` (the same greedy answer as the remote gives directly)
//! and through a conversation (which asks for confirmation first), counts it in `/metrics`,
//! ends a stream with an error event when the remote is stopped mid-answer, and fails fast for
//! a remote that is not there. The remote's key appears nowhere but its private file.

mod serve_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_support::{SseStream, TestServer};

const REMOTE_KEY: &str = "sk-remote-secret-4242-providers";
const KEY_VARIABLE: &str = "HEARTH_TEST_REMOTE_KEY";

/// `hearth provider ARGS` with `home` as the data folder.
fn provider_command(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("provider")
        .args(args)
        .env("HEARTH_HOME", home)
        .env(KEY_VARIABLE, REMOTE_KEY)
        .output()
        .expect("cannot run hearth provider")
}

fn greedy_chat(model: &str, max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

/// The text of a streamed chat completion's events, and whether it ended with `[DONE]`.
fn streamed_text(events: &[String]) -> (String, bool) {
    let mut text = String::new();
    for event in events {
        if event == "[DONE]" {
            return (text, true);
        }
        let chunk: Value = serde_json::from_str(event).expect("a JSON chunk");
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    (text, false)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn a_second_hearth_serves_as_a_remote_provider() {
    let remote = TestServer::start(&["--api-key", REMOTE_KEY]);
    remote.wait_ready();
    let remote_model = remote.model_id();
    let remote_url = format!("http://{}/v1", remote.address);

    // The front server's data folder, with the provider added by the CLI.
    let front_home = tempfile::tempdir().unwrap();
    let added = provider_command(
        front_home.path(),
        &["add", "lab", &remote_url, "--api-key-env", KEY_VARIABLE],
    );
    let added_out = String::from_utf8_lossy(&added.stdout).into_owned();
    assert!(
        added.status.success(),
        "{added_out}{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(
        added_out.contains(&format!("lab/{remote_model}")),
        "{added_out}"
    );
    let listed = provider_command(front_home.path(), &["ls"]);
    let listed_out = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed_out.contains("lab") && listed_out.contains(" ok "),
        "{listed_out}"
    );
    let refused = provider_command(front_home.path(), &["add", "Bad/Name", &remote_url]);
    assert!(!refused.status.success());

    let front = TestServer::start_in(front_home, None, &[]);
    let model = format!("lab/{remote_model}");

    // Listed beside the (absent) local models, marked as remote.
    let models = front.get("/v1/models").json();
    let entry = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["id"] == model.as_str())
        .unwrap_or_else(|| panic!("{model} not in {models}"));
    assert_eq!(entry["provider"], "lab");

    // The same greedy answer through the front server as from the remote itself.
    let direct = remote.post_json(
        "/v1/chat/completions",
        &greedy_chat(&remote_model, 12, false),
    );
    assert_eq!(direct.status, 200, "{}", direct.text());
    let direct_text = direct.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let stream = SseStream::open(
        &front,
        "/v1/chat/completions",
        &greedy_chat(&model, 12, true),
    );
    assert_eq!(stream.status, 200);
    let events = stream.collect();
    let (text, done) = streamed_text(&events);
    assert!(done, "no [DONE]: {events:?}");
    assert_eq!(text, direct_text);
    let whole = front.post_json("/v1/chat/completions", &greedy_chat(&model, 12, false));
    assert_eq!(whole.status, 200, "{}", whole.text());
    let whole = whole.json();
    assert_eq!(whole["model"], model.as_str());
    assert!(whole["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // Measured on the front server's side.
    let metrics = front.get("/metrics").text();
    let ttft_count = format!("hearth_time_to_first_token_seconds_count{{model=\"{model}\"}}");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with(&ttft_count) && !line.ends_with(" 0")),
        "no TTFT for {model} in /metrics:\n{metrics}"
    );

    // A conversation asks before its first message leaves the machine, then streams.
    let conversation = front.post_json(
        "/api/conversations",
        &json!({"model": model, "settings": {"temperature": 0, "max_tokens": 24}}),
    );
    assert_eq!(conversation.status, 201, "{}", conversation.text());
    let id = conversation.json()["id"].as_i64().unwrap();
    let path = format!("/api/conversations/{id}/messages");
    let unconfirmed = front.post_json(&path, &json!({"content": "Say hi."}));
    assert_eq!(unconfirmed.status, 409, "{}", unconfirmed.text());
    assert_eq!(
        unconfirmed.json()["error"]["code"],
        "remote_confirmation_required"
    );
    let confirmed = SseStream::open(
        &front,
        &path,
        &json!({"content": "Say hi.", "confirm_remote": true}),
    );
    assert_eq!(confirmed.status, 200);
    let chat_events = confirmed.collect();
    assert!(
        chat_events
            .iter()
            .any(|event| event.contains("\"type\":\"done\"")),
        "{chat_events:?}"
    );
    let second = SseStream::open(&front, &path, &json!({"content": "Again."}));
    assert_eq!(second.status, 200, "later messages need no confirmation");
    second.collect();
    let history = front.get(&format!("/api/conversations/{id}")).json();
    let answered_by_lab = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["metrics"]["provider"] == "lab")
        .count();
    assert_eq!(answered_by_lab, 2, "{history}");

    // The key: sent to the remote, never shown, logged or stored in the history.
    for path in [
        "/api/providers",
        "/v1/models",
        &format!("/api/conversations/{id}"),
    ] {
        assert!(
            !front.get(path).text().contains(REMOTE_KEY),
            "{path} shows the key"
        );
    }
    assert!(!front.stderr().contains(REMOTE_KEY));
    let providers = front.get("/api/providers").json();
    assert_eq!(providers["data"][0]["has_key"], true);
    for file in files_under(front.home()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let holds_key = bytes
            .windows(REMOTE_KEY.len())
            .any(|window| window == REMOTE_KEY.as_bytes());
        let is_key_file = file.file_name().and_then(|name| name.to_str())
            == Some(hearth_server::PROVIDER_KEYS_FILE_NAME);
        assert!(
            !holds_key || is_key_file,
            "{} holds the key",
            file.display()
        );
    }

    // A remote stopped mid-answer: the stream ends with an error event, not [DONE].
    let mut long = greedy_chat(&model, 400, true);
    long["ignore_eos"] = json!(true);
    long["messages"][0]["content"] = json!("Write a very long story about a lighthouse.");
    let mut cut = SseStream::open(&front, "/v1/chat/completions", &long);
    assert_eq!(cut.status, 200);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(cut.next_data().expect("the first chunks"));
    }
    drop(remote);
    let rest = cut.collect();
    let last = rest.last().expect("an event after the remote stopped");
    assert!(!rest.iter().any(|event| event == "[DONE]"), "{rest:?}");
    let error: Value = serde_json::from_str(last).unwrap();
    assert_eq!(error["error"]["code"], "provider_error", "{last}");
    assert!(error["error"]["message"].as_str().unwrap().contains("lab"));

    // A provider that is not there fails within the connect timeout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let added = front.post_json(
        "/api/providers",
        &json!({"name": "gone", "base_url": format!("http://127.0.0.1:{port}")}),
    );
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(added.json()["status"], "unreachable");
    let started = Instant::now();
    let failed = front.post_json("/v1/chat/completions", &greedy_chat("gone/any", 4, true));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(failed.status, 502, "{}", failed.text());
    assert_eq!(failed.json()["error"]["code"], "provider_unreachable");
    assert_eq!(
        front.send("DELETE", "/api/providers/gone", None).status,
        204
    );
}
