//! The Ollama router without a socket: what it serves and what it never serves (Hearth's
//! private API), its key and Host rules, Ollama's error shape, and hostile bodies refused
//! with a 400 naming the field before anything reaches an engine.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::test_support::{loopback_state, TOKEN};
use crate::{AppState, ServableModel};

const PORT: u16 = super::DEFAULT_OLLAMA_PORT;
const HOST: &str = "127.0.0.1:11434";
const KEY: &str = "sk-user-key";

/// The state of a loopback server (a user key when `key`), as the Ollama listener gets it.
fn state_with(key: Option<&str>) -> AppState {
    let state = loopback_state(
        vec![ServableModel {
            id: "m".into(),
            path: "/home/someone/secret/m.gguf".into(),
            created: 0,
        }],
        key.map(str::to_string).into_iter().collect(),
        &[],
    );
    AppState {
        security: Arc::new(state.security.for_port(PORT)),
        ..state
    }
}

fn request(method: Method, path: &str, body: Option<Value>, key: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    if let Some(key) = key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, String) {
    let response = super::router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The `error` string of an Ollama error body (it must be a string, not OpenAI's object).
fn error_of(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error string: {body}"))
        .to_string()
}

#[tokio::test]
async fn the_root_answers_as_ollama_does_and_version_needs_no_key() {
    let state = state_with(Some(KEY));
    let (status, body) = send(&state, request(Method::GET, "/", None, None)).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Ollama is running")
    );
    let (status, body) = send(&state, request(Method::HEAD, "/", None, None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    let (status, body) = send(&state, request(Method::GET, "/api/version", None, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["version"],
        super::OLLAMA_API_VERSION
    );
}

#[tokio::test]
async fn hearths_private_api_is_never_reachable_through_the_ollama_listener() {
    let state = state_with(None);
    for (method, path) in [
        (Method::GET, "/api/conversations"),
        (Method::POST, "/api/conversations"),
        (Method::GET, "/api/settings"),
        (Method::PATCH, "/api/settings"),
        (Method::GET, "/api/models"),
        (Method::GET, "/api/downloads"),
        (Method::POST, "/api/downloads"),
        (Method::GET, "/api/system"),
        (Method::GET, "/api/about"),
        (Method::POST, "/v1/chat/completions"),
        (Method::GET, "/index.html"),
    ] {
        // Even with the access token that opens them on the main listener.
        let (status, body) = send(
            &state,
            request(method.clone(), path, Some(json!({})), Some(TOKEN)),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert!(error_of(&body).contains("no such route"), "{body}");
    }
}

#[tokio::test]
async fn a_user_key_is_needed_as_on_v1_and_errors_are_ollamas_shape() {
    let state = state_with(Some(KEY));
    let (status, body) = send(&state, request(Method::GET, "/api/tags", None, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&body).contains("API key"), "{body}");
    let (status, body) = send(
        &state,
        request(Method::GET, "/api/tags", None, Some("wrong")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = send(&state, request(Method::GET, "/api/tags", None, Some(KEY))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Without a user key, a loopback server leaves it open, as /v1.
    let (status, body) = send(
        &state_with(None),
        request(Method::GET, "/api/tags", None, None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tags: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tags["models"][0]["name"], "m");
    assert!(!body.contains("/home/"), "{body}");
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let state = state_with(None);
    let mut foreign = request(Method::GET, "/api/tags", None, None);
    foreign
        .headers_mut()
        .insert(header::HOST, "evil.example:11434".parse().unwrap());
    let (status, body) = send(&state, foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error_of(&body).contains("Host"), "{body}");
    // The main listener's port is not this listener's Host.
    let mut other_port = request(Method::GET, "/api/tags", None, None);
    other_port
        .headers_mut()
        .insert(header::HOST, "127.0.0.1:4327".parse().unwrap());
    assert_eq!(send(&state, other_port).await.0, StatusCode::FORBIDDEN);
    let mut page = request(Method::POST, "/api/chat", Some(json!({})), None);
    page.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    assert_eq!(send(&state, page).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn hostile_bodies_get_400_with_a_message_naming_the_field() {
    let state = state_with(None);
    let chat = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let many: Vec<String> = (0..3000).map(|i| format!("t{i}")).collect();
    let cases = [
        (
            "/api/chat",
            chat(json!({"options": {"temperature": "hot"}})),
            "options.temperature",
        ),
        (
            "/api/chat",
            chat(json!({"options": {"temperature": -1}})),
            "options.temperature",
        ),
        (
            "/api/chat",
            chat(json!({"options": {"top_k": 1.5}})),
            "options.top_k",
        ),
        (
            "/api/chat",
            chat(json!({"options": {"num_predict": 0}})),
            "options.num_predict",
        ),
        (
            "/api/chat",
            chat(json!({"options": "fast"})),
            "'options' must be an object",
        ),
        (
            "/api/chat",
            chat(json!({"stream": "yes"})),
            "'stream' must be a boolean",
        ),
        ("/api/chat", chat(json!({"format": "yaml"})), "'format'"),
        ("/api/chat", chat(json!({"format": 3})), "'format'"),
        (
            "/api/chat",
            chat(json!({"keep_alive": "soon"})),
            "keep_alive",
        ),
        ("/api/chat", chat(json!({"keep_alive": true})), "keep_alive"),
        (
            "/api/chat",
            chat(json!({"tools": [{"type": "function"}]})),
            "tools",
        ),
        (
            "/api/chat",
            json!({"model": "m", "messages": "hi"}),
            "'messages' must be an array",
        ),
        (
            "/api/chat",
            json!({"model": "m", "messages": []}),
            "at least one message",
        ),
        (
            "/api/chat",
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            "/api/chat",
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            "/api/chat",
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "'model' is required",
        ),
        (
            "/api/chat",
            json!({"model": 7, "messages": []}),
            "'model' must be a string",
        ),
        ("/api/chat", json!(["not", "an", "object"]), "JSON object"),
        (
            "/api/generate",
            json!({"model": "m", "prompt": 5}),
            "'prompt' must be a string",
        ),
        (
            "/api/generate",
            json!({"model": "m", "prompt": "x", "raw": "no"}),
            "'raw' must be a boolean",
        ),
        (
            "/api/generate",
            json!({"model": "m", "prompt": "x", "images": ["aGk="]}),
            "images",
        ),
        (
            "/api/embed",
            json!({"model": "m", "input": many}),
            "at most 2048 inputs",
        ),
        (
            "/api/embed",
            json!({"model": "m", "input": 3}),
            "'input' must be a string",
        ),
        (
            "/api/embed",
            json!({"model": "m", "input": ""}),
            "must not be empty",
        ),
        (
            "/api/embeddings",
            json!({"model": "m", "prompt": ["a", "b"]}),
            "one string",
        ),
        (
            "/api/show",
            json!({"model": ["m"]}),
            "'model' must be a string",
        ),
        (
            "/api/pull",
            json!({"model": "m", "stream": "yes"}),
            "'stream' must be a boolean",
        ),
    ];
    for (path, body, expected) in cases {
        let (status, answer) = send(
            &state,
            request(Method::POST, path, Some(body.clone()), None),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        let message = error_of(&answer);
        assert!(message.contains(expected), "{path} {body}: {message}");
        assert!(!message.contains("/home/"), "{message}");
    }
    let (status, answer) = send(
        &state,
        Request::builder()
            .method(Method::POST)
            .uri("/api/chat")
            .header(header::HOST, HOST)
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&answer).contains("JSON"), "{answer}");
}

#[tokio::test]
async fn an_unknown_model_is_a_404_and_every_request_is_counted() {
    let state = state_with(None);
    let (status, body) = send(
        &state,
        request(
            Method::POST,
            "/api/show",
            Some(json!({"model": "nope"})),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error_of(&body).contains("nope"), "{body}");
    send(&state, request(Method::GET, "/", None, None)).await;
    send(&state, request(Method::GET, "/api/nothing", None, None)).await;
    let metrics = state.metrics.render(&[], 0);
    for line in [
        "route=\"ollama /api/show\",status=\"404\"} 1",
        "route=\"ollama /\",status=\"200\"} 1",
        "route=\"ollama unmatched\",status=\"404\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}
