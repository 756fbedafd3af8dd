//! `POST /v1/messages` through the router: every error in Anthropic's shape (validation, keys,
//! Host, unknown model, a dead engine), the key accepted as `x-api-key`, and the route counted
//! by `/metrics`.

use super::*;

fn message_body(extra: Value) -> String {
    let mut body = json!({"model": "m", "max_tokens": 16,
                          "messages": [{"role": "user", "content": "hi"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body.to_string()
}

/// Anthropic's error object, with this type, and no OpenAI `error.code` left over.
fn assert_anthropic_error(body: &Value, error_type: &str) {
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], error_type, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{body}");
    assert!(!message.contains("/home/"), "a path leaked: {message}");
    assert!(body["error"].get("code").is_none(), "{body}");
}

fn with_x_api_key(mut request: Request<Body>, key: &str) -> Request<Body> {
    request
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    request
}

#[tokio::test]
async fn every_error_of_the_messages_route_has_anthropics_shape() {
    let state = state();
    let mut missing = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, body) = send(&state, post("/v1/messages", missing.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_anthropic_error(&body, "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));

    missing["max_tokens"] = json!(8);
    missing["model"] = json!("no-such-model");
    let (status, _, body) = send(&state, post("/v1/messages", missing.to_string())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_anthropic_error(&body, "not_found_error");

    let (status, _, body) = send(&state, post("/v1/messages", "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_anthropic_error(&body, "invalid_request_error");

    // A valid request reaches the (missing) engine: a clean 500, as an `api_error`.
    let (status, _, body) = send(&state, post("/v1/messages", message_body(json!({})))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_anthropic_error(&body, "api_error");
    assert!(!body.to_string().contains("nonexistent"), "{body}");

    let mut foreign = post("/v1/messages", message_body(json!({})));
    foreign
        .headers_mut()
        .insert(header::HOST, "evil.example".parse().unwrap());
    let (status, _, body) = send(&state, foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_anthropic_error(&body, "permission_error");

    // Other routes keep OpenAI's shape.
    let (_, _, body) = send(&state, post("/v1/chat/completions", "{not json")).await;
    assert_eq!(body["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn the_key_is_accepted_as_x_api_key_or_bearer() {
    let state = state_with(Some(KEY), &[]);
    let (status, _, body) = send(&state, post("/v1/messages", message_body(json!({})))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_anthropic_error(&body, "authentication_error");
    let wrong = with_x_api_key(post("/v1/messages", message_body(json!({}))), "sk-wrong");
    let (status, _, body) = send(&state, wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_anthropic_error(&body, "authentication_error");
    // With the key (either header), the request gets past the key check to the engine.
    let right = with_x_api_key(post("/v1/messages", message_body(json!({}))), KEY);
    let (status, _, _) = send(&state, right).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let bearer = with_key(post("/v1/messages", message_body(json!({}))), KEY);
    let (status, _, _) = send(&state, bearer).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    // x-api-key works on the OpenAI routes too.
    let (status, _, _) = send(&state, with_x_api_key(get("/v1/models"), KEY)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_messages_route_is_counted_by_metrics() {
    let state = state();
    send(
        &state,
        post("/v1/messages", message_body(json!({"max_tokens": 0}))),
    )
    .await;
    let response = router(state.clone())
        .oneshot(get("/metrics"))
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        text.contains(r#"route="/v1/messages",status="400""#),
        "{text}"
    );
}
