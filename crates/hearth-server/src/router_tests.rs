//! The router driven without a socket (`tower::ServiceExt::oneshot`): validation, security,
//! errors, models, health and metrics. No engine runs here: the one servable model points at
//! a worker program that does not exist, so every path up to the engine is exercised and the
//! engine's failure is seen as a clean 500.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::error::LOADING_RETRY_AFTER_SECS;
use crate::test_support::{loopback_state, HOST, TOKEN};
use crate::{router, AppState, ServableModel, MAX_REQUEST_BODY_BYTES};

const KEY: &str = "sk-test-key";

fn state_with(api_key: Option<&str>, allowed_origins: &[&str]) -> AppState {
    let model = ServableModel {
        id: "m".into(),
        path: "/home/someone/secret/m.gguf".into(),
        created: 1_700_000_000,
    };
    let origins: Vec<String> = allowed_origins.iter().map(|o| o.to_string()).collect();
    loopback_state(
        vec![model],
        api_key.map(str::to_string).into_iter().collect(),
        &origins,
    )
}

fn state() -> AppState {
    state_with(None, &[])
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap()
}

/// `request` with `Authorization: Bearer key`.
fn with_key(mut request: Request<Body>, key: &str) -> Request<Body> {
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    request
}

/// A PATCH of `/api/settings` with `body`, sent with the access token.
fn patch_settings(body: Value) -> Request<Body> {
    let mut request = with_key(post("/api/settings", body.to_string()), TOKEN);
    *request.method_mut() = Method::PATCH;
    request
}

/// [`state`] with a settings file in `folder`.
fn state_with_settings(folder: &std::path::Path) -> AppState {
    AppState {
        settings: Some(Arc::new(crate::settings::SettingsStore::new(folder))),
        ..state()
    }
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, Response, Value) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, Response::from_parts(parts, Body::empty()), value)
}

/// Checks the body is OpenAI's error object, with this code.
fn assert_error(body: &Value, code: &str) {
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].as_str().is_some(), "{body}");
    assert!(error.as_object().unwrap().contains_key("param"), "{body}");
    assert_eq!(error["code"], code, "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(!message.contains("/home/"), "a path leaked: {message}");
}

fn chat(extra: Value) -> String {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body.to_string()
}

#[tokio::test]
async fn invalid_fields_are_400_with_their_param() {
    let state = state();
    let cases = [
        (json!({"n": 2}), "n"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"temperature": -1}), "temperature"),
        (json!({"max_tokens": -5}), "max_tokens"),
        (json!({"max_tokens": 99_999_999_999u64}), "max_tokens"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"stop": [1]}), "stop[0]"),
        (
            json!({"response_format": {"type": "yaml"}}),
            "response_format.type",
        ),
        (json!({"messages": []}), "messages"),
        (json!({"messages": "hi"}), "messages"),
        (json!({"model": 7}), "model"),
    ];
    for (extra, param) in cases {
        let (status, _, body) =
            send(&state, post("/v1/chat/completions", chat(extra.clone()))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        assert_eq!(body["error"]["param"], param, "{extra}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let state = state();
    for body in ["{", "", "[1,2]", "null", "\"text\"", "{\"model\": \"m\",}"] {
        let (status, _, value) = send(&state, post("/v1/chat/completions", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_error(&value, "invalid_json");
    }
    let (status, _, value) = send(&state, post("/v1/completions", vec![0xff, 0xfe, b'{'])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&value, "invalid_json");
}

#[tokio::test]
async fn oversize_bodies_are_413() {
    let state = state();
    let big = vec![b' '; MAX_REQUEST_BODY_BYTES + 1];
    let (status, _, body) = send(&state, post("/v1/chat/completions", big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "request_too_large");
    // Declared too large: refused before reading.
    let mut request = post("/v1/chat/completions", "{}");
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, "52428800".parse().unwrap());
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "request_too_large");
}

#[tokio::test]
async fn unknown_models_and_routes_are_404() {
    let state = state();
    let (status, _, body) = send(
        &state,
        post("/v1/chat/completions", chat(json!({"model": "gpt-4o"}))),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "model_not_found");
    assert_eq!(body["error"]["param"], "model");
    let (status, _, body) = send(&state, get("/v1/models/gpt-4o")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "model_not_found");
    let (status, _, body) = send(&state, get("/v2/everything")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_url");
    let (status, _, body) = send(&state, get("/v1/chat/completions")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");
}

#[tokio::test]
async fn models_are_listed_without_paths() {
    let state = state();
    let (status, _, body) = send(&state, get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "list");
    assert_eq!(
        body["data"][0],
        json!({"id": "m", "object": "model", "created": 1_700_000_000, "owned_by": "hearth"})
    );
    assert!(!body.to_string().contains("secret"));
    let (status, _, body) = send(&state, get("/v1/models/m")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "m");
}

#[tokio::test]
async fn a_dead_engine_is_a_clean_500_without_paths() {
    let state = state();
    let (status, _, body) = send(&state, post("/v1/chat/completions", chat(json!({})))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_error(&body, "engine_unavailable");
    assert!(!body.to_string().contains("nonexistent"), "{body}");
}

#[tokio::test]
async fn loading_models_make_requests_and_health_503_with_retry_after() {
    let state = state();
    let (status, _, body) = send(&state, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");

    let _loading = state.models.insert_never_loading("m");
    let (status, _, body) = send(&state, get("/health")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "loading");
    // Without a key, only ready or loading: no model list, no ids.
    assert!(body.get("models").is_none(), "{body}");
    assert!(!body.to_string().contains("\"m\""), "{body}");
    let (status, _, body) = send(&state, with_key(get("/health"), TOKEN)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["models"], json!([{"id": "m", "state": "loading"}]));
    let (_, _, body) = send(&state, with_key(get("/health"), "sk-wrong")).await;
    assert!(
        body.get("models").is_none(),
        "a wrong key is no key: {body}"
    );
    let (status, response, _) = send(&state, get("/health")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()[header::RETRY_AFTER],
        LOADING_RETRY_AFTER_SECS.to_string().as_str()
    );
    let (status, response, body) =
        send(&state, post("/v1/chat/completions", chat(json!({})))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&body, "model_loading");
    assert!(response.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn foreign_hosts_are_403() {
    let state = state();
    for host in ["evil.example", "evil.example:4327", "127.0.0.1:1"] {
        let mut request = get("/v1/models");
        request
            .headers_mut()
            .insert(header::HOST, host.parse().unwrap());
        let (status, _, body) = send(&state, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}");
        assert_error(&body, "host_not_allowed");
    }
    let request = Request::builder()
        .uri("/health")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&state, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no Host at all");
    for host in ["localhost:4327", "[::1]:4327", "127.0.0.1"] {
        let mut request = get("/v1/models");
        request
            .headers_mut()
            .insert(header::HOST, host.parse().unwrap());
        let (status, _, _) = send(&state, request).await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn cors_allows_named_origins_only_and_never_credentials() {
    let state = state_with(None, &["http://localhost:5173"]);
    let with_origin = |origin: &str| {
        let mut request = get("/v1/models");
        request
            .headers_mut()
            .insert(header::ORIGIN, origin.parse().unwrap());
        request
    };
    let (status, _, body) = send(&state, with_origin("http://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "origin_not_allowed");
    let (status, _, _) = send(&state, with_origin("null")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    for origin in ["http://localhost:5173", "http://127.0.0.1:4327"] {
        let (status, response, _) = send(&state, with_origin(origin)).await;
        assert_eq!(status, StatusCode::OK, "{origin}");
        let headers = response.headers();
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }
    // No Origin (not a browser): no CORS headers at all.
    let (_, response, _) = send(&state, get("/v1/models")).await;
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/chat/completions")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization, content-type, x-stainless-os",
            )
            .body(Body::empty())
            .unwrap()
    };
    let (status, response, _) = send(&state, preflight("http://localhost:5173")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://localhost:5173"
    );
    assert!(headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .contains("x-stainless-os"));
    // The UI on an allowed origin renames conversations and saves settings.
    let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap();
    assert!(
        methods.contains("PATCH") && methods.contains("DELETE"),
        "{methods}"
    );
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    let (status, _, _) = send(&state, preflight("https://evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn metrics_count_responses_by_route_and_status() {
    let state = state();
    send(&state, get("/v1/models")).await;
    send(&state, post("/v1/chat/completions", "{")).await;
    send(&state, get("/nowhere/at/all")).await;
    let response = router(state.clone())
        .oneshot(get("/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("hearth_http_requests_total{route=\"/v1/models\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "hearth_http_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("hearth_http_requests_total{route=\"unmatched\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(!text.contains("nowhere"));
    assert!(text.contains("# TYPE hearth_time_to_first_token_seconds histogram"));
    assert!(text.contains("hearth_models_loaded 0"));
}

#[tokio::test]
async fn ui_files_need_no_key_and_carry_the_csp_but_the_api_still_does() {
    let state = state_with(Some(KEY), &[]);
    let page = |method: Method, path: &str, host: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
            .body(Body::empty())
            .unwrap()
    };
    // Whether or not ui/dist was built for this test binary, `/` and client-side routes are
    // HTML pages under the UI's policy, with no key.
    for path in ["/", "/chat/3", "/settings"] {
        let (status, response, _) = send(&state, page(Method::GET, path, HOST)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            crate::ui::CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let (status, _, _) = send(&state, page(Method::HEAD, "/", HOST)).await;
    assert_eq!(status, StatusCode::OK);
    // The API wants the key even from a browser navigating to it (`/api/*` even without a user
    // key: see the_history_and_settings_api_needs_a_key_even_on_loopback).
    for path in [
        "/api/conversations",
        "/v1/models",
        "/api/nothing-here",
        "/metrics",
    ] {
        let (status, _, body) = send(&state, page(Method::GET, path, HOST)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_error(&body, "invalid_api_key");
    }
    let (status, _, _) = send(&state, page(Method::POST, "/", HOST)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // DNS rebinding is refused for the UI too.
    let (status, _, _) = send(&state, page(Method::GET, "/", "evil.example")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_system_report_tells_the_machine_the_server_and_the_loaded_models() {
    let report = hearth_probe::ProbeReport {
        probe_version: hearth_probe::PROBE_VERSION,
        profile: hearth_probe::profile::fixtures::nvidia_12gb(),
        adapters: Vec::new(),
        llama_devices: Some(vec![hearth_probe::LlamaDevice {
            name: "CUDA0".into(),
            description: "NVIDIA GeForce RTX 4070".into(),
            backend: "CUDA".into(),
            device_type: "gpu".into(),
            memory_total_bytes: 12 << 30,
            memory_free_bytes: 11 << 30,
            device_id: None,
            used: true,
        }]),
        backends: None,
        cpu_bandwidth_from_cache: true,
        cache_path: std::path::PathBuf::new(),
    };
    let state = AppState {
        machine: Arc::new(crate::system::MachineInfo::with_report(report)),
        ..state_with(Some(KEY), &[])
    };
    let mut request = get("/api/system");
    let (status, _, _) = send(&state, get("/api/system")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the report needs the key");
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {KEY}").parse().unwrap(),
    );
    let (status, _, body) = send(&state, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["server"]["api_key_required"], true);
    let probe = &body["probe"];
    assert!(probe["cpu"]["physical_cores"].as_u64().unwrap() >= 1);
    assert!(probe["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(probe["gpus"][0]["name"], "NVIDIA GeForce RTX 4070");
    assert_eq!(probe["gpus"][0]["total_bytes"], 12u64 << 30);
    assert!(probe["bandwidth"]["gpu_gb_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(body["loaded"], json!([]));

    // A server that cannot probe says so with null, and still answers.
    let (status, _, body) = send(&state_with(None, &[]), with_key(get("/api/system"), TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["probe"], Value::Null);
    assert_eq!(body["server"]["api_key_required"], false);
}

mod anthropic;
mod keys;
mod tools;
