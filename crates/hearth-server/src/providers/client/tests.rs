//! The client's pure parts: URLs, messages, request bodies and figures.

use super::*;

#[test]
fn loopback_urls_are_recognised() {
    assert!(is_loopback_url("http://127.0.0.1:8080/v1"));
    assert!(is_loopback_url("http://[::1]:8080/v1"));
    assert!(is_loopback_url("http://localhost/v1"));
    assert!(!is_loopback_url("https://gpu-box.lan:8000/v1"));
    assert!(!is_loopback_url("http://10.0.0.5/v1"));
}

#[test]
fn messages_are_one_bounded_line() {
    let long = "x".repeat(2000);
    assert_eq!(
        clean_message(&long).chars().count(),
        MAX_REMOTE_MESSAGE_CHARS
    );
    assert_eq!(clean_message("bad\nthing\r"), "bad thing");
}

#[test]
fn error_statuses_keep_the_remotes_message() {
    let error = status_error(400, br#"{"error":{"message":"model too big","type":"x"}}"#);
    assert_eq!(error.failure, RemoteFailure::Status(400));
    assert_eq!(error.message, "model too big");
    let vllm = status_error(404, br#"{"object":"error","message":"no such model"}"#);
    assert_eq!(vllm.message, "no such model");
    let tgi = status_error(422, br#"{"error":"bad input"}"#);
    assert_eq!(tgi.message, "bad input");
    assert_eq!(status_error(401, b"").message, "it refused the API key");
}

#[test]
fn chat_requests_carry_only_portable_fields() {
    let mut generation = Generation::new(Prompt::Chat {
        messages: vec![hearth_protocol::ChatMessage::new(Role::User, "Hi")],
    });
    generation.max_tokens = Some(7);
    generation.stop = vec!["END".into()];
    let (path, body) = remote_request_body("big-model", &generation).unwrap();
    assert_eq!(path, "/chat/completions");
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["model"], "big-model");
    assert_eq!(value["messages"][0]["role"], "user");
    assert_eq!(value["messages"][0]["content"], "Hi");
    assert_eq!(value["stream"], true);
    assert_eq!(value["stream_options"]["include_usage"], true);
    assert_eq!(value["max_tokens"], 7);
    assert_eq!(value["stop"][0], "END");
    assert!(value.get("top_k").is_none() && value.get("min_p").is_none());
    assert!(value.get("ignore_eos").is_none());
    let text = Generation::new(Prompt::Text {
        text: "Once".into(),
    });
    let (path, body) = remote_request_body("m", &text).unwrap();
    assert_eq!(path, "/completions");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["prompt"],
        "Once"
    );
    let tokens = Generation::new(Prompt::Tokens { tokens: vec![1] });
    assert!(remote_request_body("m", &tokens).is_err());
}

#[test]
fn usage_gives_the_token_counts_and_timings_stay_hearths() {
    let start = Instant::now();
    let mut recorder = MetricsRecorder::new(start);
    let headers = start + Duration::from_millis(10);
    recorder.admitted(headers, 0, 0);
    recorder.token_generated(start + Duration::from_millis(30));
    recorder.token_generated(start + Duration::from_millis(40));
    let metrics = final_metrics(
        &mut recorder,
        headers,
        Some(RemoteUsage {
            prompt_tokens: 12,
            completion_tokens: 3,
        }),
    );
    assert_eq!(metrics.prompt_tokens, 12);
    assert_eq!(metrics.generated_tokens, 3);
    assert!((metrics.ttft_ms - 30.0).abs() < 1.0);
    assert_eq!(metrics.itl_ms.len(), 1);
}
