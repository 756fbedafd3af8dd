//! The KV cache's disk tier through `hearth serve`, as an API client meets it: a coding tool
//! that resends its long system prompt after Hearth restarted gets that prefix restored from
//! `<data dir>/kv-cache` and computes only the new tokens (`usage.prompt_tokens_details.
//! cached_tokens`), with the same greedy answer as a server that had nothing cached.

mod serve_support;

use std::time::Duration;

use serde_json::{json, Value};
use serve_support::TestServer;

/// A graceful stop saves the slots to disk; on a busy 2-core machine that takes a moment.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A tool's long system prompt (about 700 tokens), then the user's question.
fn request(model: &str, question: &str) -> Value {
    let rules: String = (1..=40)
        .map(|rule| {
            format!(
                "Rule {rule}: files in folder {rule} use {} spaces. ",
                rule % 4 + 2
            )
        })
        .collect();
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": format!("You are a coding assistant. {rules}")},
            {"role": "user", "content": question},
        ],
        "max_tokens": 8,
        "temperature": 0,
    })
}

fn ask(server: &TestServer, question: &str) -> (String, u64, u64) {
    let response = server.post_json(
        "/v1/chat/completions",
        &request(&server.model_id(), question),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    let usage = &answer["usage"];
    (
        answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string(),
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
    )
}

#[cfg(unix)]
#[test]
fn a_long_prefix_resent_after_a_restart_comes_back_from_disk() {
    let model = hearth_testkit::smollm2();
    let first = TestServer::start_in(tempfile::tempdir().unwrap(), Some(&model), &[]);
    first.wait_ready();
    let (_, prompt_tokens, cached) = ask(&first, "Which folder uses 3 spaces?");
    assert!(prompt_tokens > 500, "{prompt_tokens}");
    assert_eq!(cached, 0, "a fresh server has nothing cached");
    let home = first.terminate(STOP_TIMEOUT);
    let files = std::fs::read_dir(home.path().join("kv-cache"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert!(files > 0, "nothing was saved to the disk tier");

    let second = TestServer::start_in(home, Some(&model), &[]);
    second.wait_ready();
    let question = "Which folder uses 5 spaces?";
    let (answer, prompt_tokens, cached) = ask(&second, question);
    eprintln!("after the restart: {cached} of {prompt_tokens} prompt tokens from disk");
    assert!(
        cached * 10 > prompt_tokens * 8,
        "{cached} of {prompt_tokens} prompt tokens came from disk"
    );
    // The same answer as a server that had nothing cached.
    let fresh = TestServer::start(&[]);
    fresh.wait_ready();
    let (fresh_answer, _, fresh_cached) = ask(&fresh, question);
    assert_eq!(fresh_cached, 0);
    assert_eq!(answer, fresh_answer);
}
