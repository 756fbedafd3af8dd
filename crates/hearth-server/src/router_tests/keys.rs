//! Keys through the router: `/v1` and `/api/*` on loopback, the access token, the setting
//! that closes `/v1`, and how the API key itself may be changed.

use super::*;

#[tokio::test]
async fn api_keys_are_required_except_for_health() {
    let state = state_with(Some(KEY), &[]);
    let (status, _, body) = send(&state, get("/v1/models")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "invalid_api_key");
    assert_eq!(body["error"]["type"], "authentication_error");

    let with_key = |key: &str| {
        let mut request = get("/v1/models");
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        request
    };
    let (status, _, body) = send(&state, with_key("sk-wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        !body.to_string().contains("sk-wrong"),
        "the key is not echoed"
    );
    let (status, _, _) = send(&state, with_key(KEY)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, get("/metrics")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(&state, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_history_and_settings_api_needs_a_key_even_on_loopback() {
    // A loopback server without a user key: only the OpenAI-style API is open.
    let state = state();
    for (method, path) in [
        (Method::GET, "/api/conversations"),
        (Method::POST, "/api/conversations"),
        (Method::GET, "/api/settings"),
        (Method::PATCH, "/api/settings"),
        (Method::GET, "/api/models"),
        (Method::GET, "/api/downloads"),
        (Method::GET, "/api/system"),
        (Method::GET, "/api/nothing-here"),
        (Method::GET, "/api"),
    ] {
        let mut request = post(path, "{}");
        *request.method_mut() = method.clone();
        let (status, _, body) = send(&state, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_error(&body, "invalid_api_key");
        assert_eq!(body["error"]["type"], "authentication_error");
        // A wrong key is refused the same way.
        let mut request = with_key(post(path, "{}"), "sk-wrong");
        *request.method_mut() = method.clone();
        let (status, _, _) = send(&state, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // The access token opens them (503: this state keeps no history or settings).
    let (status, _, _) = send(&state, with_key(get("/api/settings"), TOKEN)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // `/v1/*` and `/metrics` stay open on loopback, whatever key an SDK sends.
    let (status, _, _) = send(&state, get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, with_key(get("/v1/models"), "sk-no-key-required")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    // With a user key, the token is accepted everywhere too.
    let state = state_with(Some(KEY), &[]);
    let (status, _, _) = send(&state, with_key(get("/v1/models"), TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, with_key(get("/api/settings"), KEY)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_setting_requires_the_key_for_the_openai_api_too() {
    let folder = tempfile::tempdir().unwrap();
    let state = state_with_settings(folder.path());
    let (status, _, body) = send(&state, with_key(get("/api/settings"), TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["require_key_for_openai_api"], false);
    let (status, _, _) = send(&state, get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, body) = send(
        &state,
        patch_settings(json!({"require_key_for_openai_api": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["require_key_for_openai_api"], true);
    for path in ["/v1/models", "/metrics"] {
        let (status, _, body) = send(&state, get(path)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_error(&body, "invalid_api_key");
    }
    let (status, _, _) = send(&state, with_key(get("/v1/models"), TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, get("/health")).await;
    assert_eq!(status, StatusCode::OK, "/health stays open");

    let (status, _, _) = send(
        &state,
        patch_settings(json!({"require_key_for_openai_api": "yes"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = send(
        &state,
        patch_settings(json!({"require_key_for_openai_api": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn changing_the_api_key_needs_the_current_one_and_never_an_empty_key() {
    let folder = tempfile::tempdir().unwrap();
    let state = state_with_settings(folder.path());
    let (status, _, body) = send(&state, patch_settings(json!({"api_key": ""}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "api_key");
    // No key set yet: nothing to prove.
    let (status, _, body) = send(&state, patch_settings(json!({"api_key": "sk-one"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["api_key_set"], true);
    // Changing or removing it needs the current one.
    for change in [json!("sk-two"), Value::Null] {
        for current in [None, Some("sk-wrong"), Some("")] {
            let mut patch = json!({"api_key": change.clone()});
            if let Some(current) = current {
                patch["current_api_key"] = json!(current);
            }
            let (status, _, body) = send(&state, patch_settings(patch)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{change} {current:?}");
            assert_error(&body, "current_api_key_required");
            assert!(!body.to_string().contains("sk-one"), "never echoed");
        }
    }
    assert_eq!(
        state.settings.as_ref().unwrap().load().api_key.as_deref(),
        Some("sk-one"),
        "a refused change changes nothing"
    );
    // Other settings need no key.
    let (status, _, _) = send(&state, patch_settings(json!({"theme": "dark"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(
        &state,
        patch_settings(json!({"api_key": "sk-two", "current_api_key": "sk-one"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["api_key_set"], true);
    assert_eq!(body["theme"], "dark");
    let (status, _, _) = send(
        &state,
        patch_settings(json!({"api_key": "", "current_api_key": "sk-two"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an empty key is refused");
    let (status, _, body) = send(
        &state,
        patch_settings(json!({"api_key": null, "current_api_key": "sk-two"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["api_key_set"], false);
}
