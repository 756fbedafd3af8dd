//! The conversation routes through `router(state)` without a socket: CRUD, validation,
//! delete with undo, export, and the messages endpoint up to the engine (whose worker
//! program does not exist here; the real model runs in hearth-cli's end-to-end tests).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use hearth_store::ConversationStore;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::test_support::{loopback_state, request, HOST, TOKEN};
use crate::{router, AppState, ServableModel};

fn state_with_store(store: Option<Arc<ConversationStore>>) -> AppState {
    let model = ServableModel {
        id: "m".into(),
        path: "/nonexistent/m.gguf".into(),
        created: 1_700_000_000,
    };
    AppState {
        conversations: store,
        ..loopback_state(vec![model], Vec::new(), &[])
    }
}

fn state() -> (tempfile::TempDir, AppState) {
    let folder = tempfile::tempdir().unwrap();
    let store = ConversationStore::open(&folder.path().join("hearth.sqlite3")).unwrap();
    (folder, state_with_store(Some(Arc::new(store))))
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, Response) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    (response.status(), response)
}

async fn json_of(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

async fn call(
    state: &AppState,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, response) = send(state, request(method, path, body)).await;
    (status, json_of(response).await)
}

#[tokio::test]
async fn conversations_are_created_listed_updated_and_searched() {
    let (_folder, state) = state();
    let (status, created) = call(
        &state,
        Method::POST,
        "/api/conversations",
        Some(json!({"title": "Garden", "model": "m", "system_prompt": "Be brief.", "settings": {"temperature": 0.3}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["settings"]["temperature"], 0.3);

    let (status, updated) = call(
        &state,
        Method::PATCH,
        &format!("/api/conversations/{id}"),
        Some(json!({"title": "Vegetables", "system_prompt": null, "settings": {"top_p": 0.5}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["title"], "Vegetables");
    assert_eq!(updated["system_prompt"], Value::Null);
    assert_eq!(updated["settings"], json!({"top_p": 0.5}));

    let (status, shown) = call(
        &state,
        Method::GET,
        &format!("/api/conversations/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["messages"], json!([]));

    let (_, listed) = call(&state, Method::GET, "/api/conversations?search=veget", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let (_, listed) = call(&state, Method::GET, "/api/conversations?search=zzz", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn bad_bodies_and_ids_get_openai_errors() {
    let (_folder, state) = state();
    for (body, param) in [
        (json!({"title": 5}), "title"),
        (json!({"model": "no-such-model"}), "model"),
        (json!({"settings": {"temperature": "hot"}}), "temperature"),
        (json!({"settings": {"rm_rf": true}}), "settings.rm_rf"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let (status, error) = call(
            &state,
            Method::POST,
            "/api/conversations",
            Some(body.clone()),
        )
        .await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
    let (status, _) = call(&state, Method::POST, "/api/conversations", Some(json!([1]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for path in [
        "/api/conversations/999",
        "/api/conversations/abc",
        "/api/conversations/-1",
    ] {
        let (status, error) = call(&state, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error["error"]["code"], "conversation_not_found");
    }
    let (status, _) = call(&state, Method::GET, "/api/conversations?limit=lots", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn delete_is_undone_by_restore_and_purge_is_final() {
    let (_folder, state) = state();
    let (_, created) = call(
        &state,
        Method::POST,
        "/api/conversations",
        Some(json!({"title": "Tmp"})),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    let (status, deleted) = call(
        &state,
        Method::DELETE,
        &format!("/api/conversations/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(deleted["deleted_at"].is_i64());
    let (_, listed) = call(&state, Method::GET, "/api/conversations", None).await;
    assert_eq!(listed["data"], json!([]));
    let (_, trash) = call(&state, Method::GET, "/api/conversations?deleted=true", None).await;
    assert_eq!(trash["data"].as_array().unwrap().len(), 1);
    let (status, error) = call(
        &state,
        Method::POST,
        &format!("/api/conversations/{id}/messages"),
        Some(json!({"content": "hello"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");

    let (status, restored) = call(
        &state,
        Method::POST,
        &format!("/api/conversations/{id}/restore"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(restored["deleted_at"], Value::Null);

    let (status, _) = send(
        &state,
        request(
            Method::DELETE,
            &format!("/api/conversations/{id}?purge=true"),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &state,
        Method::POST,
        &format!("/api/conversations/{id}/restore"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn exports_are_markdown_or_json_attachments() {
    let (folder, state) = state();
    let (_, created) = call(
        &state,
        Method::POST,
        "/api/conversations",
        Some(json!({"title": "Notes"})),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    // A message written directly, as a finished answer would be.
    let store = ConversationStore::open(&folder.path().join("hearth.sqlite3")).unwrap();
    store
        .append_message(
            id,
            hearth_store::NewMessage {
                role: hearth_store::Role::User,
                content: "<b>hi</b>".into(),
                status: hearth_store::MessageStatus::Complete,
                metrics: None,
            },
        )
        .unwrap();
    let (status, response) = send(
        &state,
        request(
            Method::GET,
            &format!("/api/conversations/{id}/export?format=markdown"),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"conversation-{id}.md\"").as_str()
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        "# Notes\n\n## User\n\n<b>hi</b>\n\n"
    );
    let (status, exported) = call(
        &state,
        Method::GET,
        &format!("/api/conversations/{id}/export?format=json"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(exported["messages"][0]["content"], "<b>hi</b>");
    let (status, _) = call(
        &state,
        Method::GET,
        &format!("/api/conversations/{id}/export?format=pdf"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn messages_are_validated_before_anything_is_saved() {
    let (_folder, state) = state();
    let (_, created) = call(&state, Method::POST, "/api/conversations", Some(json!({}))).await;
    let id = created["id"].as_i64().unwrap();
    let path = format!("/api/conversations/{id}/messages");
    for body in [
        json!({}),
        json!({"content": "  "}),
        json!({"content": 3}),
        json!({"content": "x", "extra": 1}),
    ] {
        let (status, error) = call(&state, Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
    }
    let (status, error) = call(
        &state,
        Method::POST,
        &path,
        Some(json!({"content": "hi", "model": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(error["error"]["code"], "model_not_found");
    // The engine cannot start here: a clean server error, and the user's message was not
    // saved twice by the failed attempt (at most once, before the engine failed).
    let (status, _) = call(&state, Method::POST, &path, Some(json!({"content": "hi"}))).await;
    assert!(status.is_server_error(), "{status}");
    let (_, shown) = call(
        &state,
        Method::GET,
        &format!("/api/conversations/{id}"),
        None,
    )
    .await;
    assert!(shown["messages"].as_array().unwrap().len() <= 1);
}

#[tokio::test]
async fn without_a_store_the_routes_say_so_and_the_api_still_works() {
    let state = state_with_store(None);
    let (status, error) = call(&state, Method::GET, "/api/conversations", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error["error"]["code"], "history_unavailable");
    let (status, _) = call(&state, Method::GET, "/v1/models", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn foreign_hosts_are_refused_here_too() {
    let (_folder, state) = state();
    let request = Request::builder()
        .uri("/api/conversations")
        .header(header::HOST, "evil.example:4327")
        .body(Body::empty())
        .unwrap();
    let (status, _) = send(&state, request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A conversation holding one question and its answer, written straight into the store.
fn answered_conversation(state: &AppState) -> (i64, Vec<i64>) {
    use hearth_store::{MessageStatus, NewConversation, NewMessage, Role};
    let store = state.conversations.clone().unwrap();
    let conversation = store
        .create_conversation(NewConversation::default())
        .unwrap();
    let ids = [(Role::User, "question"), (Role::Assistant, "answer")]
        .into_iter()
        .map(|(role, content)| {
            store
                .append_message(
                    conversation.id,
                    NewMessage {
                        role,
                        content: content.into(),
                        status: MessageStatus::Complete,
                        metrics: None,
                    },
                )
                .unwrap()
                .id
        })
        .collect();
    (conversation.id, ids)
}

async fn message_texts(state: &AppState, id: i64) -> Vec<String> {
    let (_, shown) = call(
        state,
        Method::GET,
        &format!("/api/conversations/{id}"),
        None,
    )
    .await;
    shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["content"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn regenerate_and_edit_are_validated_and_change_nothing_until_the_model_answers() {
    let (_folder, state) = state();
    let (id, ids) = answered_conversation(&state);
    let (other, other_ids) = answered_conversation(&state);
    let regenerate = format!("/api/conversations/{id}/regenerate");
    let edit = |message_id: i64| format!("/api/conversations/{id}/messages/{message_id}/edit");

    // Regenerate needs a user message to answer.
    let (_, empty) = call(&state, Method::POST, "/api/conversations", Some(json!({}))).await;
    let (status, error) = call(
        &state,
        Method::POST,
        &format!("/api/conversations/{}/regenerate", empty["id"]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["code"], "nothing_to_regenerate");
    // Bodies: optional for regenerate, but only `model`; edit needs content.
    for (path, body) in [
        (regenerate.clone(), json!({"content": "x"})),
        (regenerate.clone(), json!({"model": 3})),
        (edit(ids[0]), json!({})),
        (edit(ids[0]), json!({"content": " "})),
        (edit(ids[0]), json!({"content": "x", "extra": true})),
        (
            edit(ids[1]),
            json!({"content": "an answer is not editable"}),
        ),
    ] {
        let (status, error) = call(&state, Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {error}");
    }
    for path in [
        edit(other_ids[0]),
        edit(999_999),
        format!("/api/conversations/{id}/messages/abc/edit"),
    ] {
        let (status, error) =
            call(&state, Method::POST, &path, Some(json!({"content": "x"}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {error}");
        assert_eq!(error["error"]["code"], "message_not_found");
    }
    let (status, error) = call(
        &state,
        Method::POST,
        &regenerate,
        Some(json!({"model": "nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(error["error"]["code"], "model_not_found");

    // The engine cannot start here: a clean server error, and nothing was removed or edited.
    let (status, _) = call(&state, Method::POST, &regenerate, None).await;
    assert!(status.is_server_error(), "{status}");
    let (status, _) = call(
        &state,
        Method::POST,
        &edit(ids[0]),
        Some(json!({"content": "new question"})),
    )
    .await;
    assert!(status.is_server_error(), "{status}");
    assert_eq!(message_texts(&state, id).await, ["question", "answer"]);
    assert_eq!(message_texts(&state, other).await, ["question", "answer"]);
}

#[tokio::test]
async fn an_export_imports_as_a_new_conversation_and_a_corrupt_one_creates_nothing() {
    let (_folder, state) = state();
    let (id, _) = answered_conversation(&state);
    let (_, exported) = call(
        &state,
        Method::GET,
        &format!("/api/conversations/{id}/export?format=json"),
        None,
    )
    .await;
    let mut document = exported.clone();
    document["model"] = json!("not-on-this-machine");
    document["settings"] = json!({"temperature": 0.5});
    let (status, imported) = call(
        &state,
        Method::POST,
        "/api/conversations/import",
        Some(document),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_ne!(imported["id"], json!(id));
    assert_eq!(imported["title"], "question");
    assert_eq!(
        imported["model"],
        Value::Null,
        "an unknown model is dropped"
    );
    assert_eq!(imported["settings"]["temperature"], 0.5);
    assert_eq!(imported["messages"].as_array().unwrap().len(), 2);
    assert_eq!(imported["messages"][1]["content"], "answer");

    let count = |state: AppState| async move {
        let (_, listed) = call(&state, Method::GET, "/api/conversations", None).await;
        listed["data"].as_array().unwrap().len()
    };
    assert_eq!(count(state.clone()).await, 2);
    let mut bad_role = exported.clone();
    bad_role["messages"][0]["role"] = json!("wizard");
    let mut bad_settings = exported.clone();
    bad_settings["settings"] = json!({"temperature": "hot"});
    for (document, param) in [
        (bad_role, Some("messages[0].role")),
        (json!({"title": "no format"}), Some("format")),
        (bad_settings, None),
        (json!([1, 2, 3]), Some("(document)")),
    ] {
        let (status, error) = call(
            &state,
            Method::POST,
            "/api/conversations/import",
            Some(document),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        if let Some(param) = param {
            assert_eq!(error["error"]["param"], param, "{error}");
            assert_eq!(error["error"]["code"], "invalid_export");
        }
    }
    let (status, _) = send(
        &state,
        Request::builder()
            .method(Method::POST)
            .uri("/api/conversations/import")
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(count(state.clone()).await, 2, "nothing was created");
}

#[tokio::test]
async fn settings_are_read_and_patched_and_new_conversations_take_the_default_model() {
    let (folder, state) = state();
    let (status, error) = call(&state, Method::GET, "/api/settings", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_eq!(error["error"]["code"], "settings_unavailable");

    let state = AppState {
        settings: Some(Arc::new(crate::settings::SettingsStore::new(folder.path()))),
        ..state
    };
    let (status, shown) = call(&state, Method::GET, "/api/settings", None).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(
        shown,
        json!({
            "theme": "system",
            "default_model": null,
            "api_port": crate::DEFAULT_PORT,
            "api_key_set": false,
            "require_key_for_openai_api": false,
            "check_for_updates": false,
            "kv_cache_disk_budget_mb": 2048,
            "ollama_api": false,
            "data_dir": folder.path().display().to_string(),
        })
    );
    let (_, untouched) = call(&state, Method::POST, "/api/conversations", Some(json!({}))).await;
    assert_eq!(untouched["model"], Value::Null);

    let (status, patched) = call(
        &state,
        Method::PATCH,
        "/api/settings",
        Some(json!({"theme": "dark", "default_model": "m", "api_key": "sk-mine"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["theme"], "dark");
    assert_eq!(patched["default_model"], "m");
    assert_eq!(patched["api_key_set"], true);
    assert!(
        !patched.to_string().contains("sk-mine"),
        "the key is write-only"
    );
    let (_, created) = call(&state, Method::POST, "/api/conversations", Some(json!({}))).await;
    assert_eq!(created["model"], "m", "{created}");

    for body in [
        json!({"default_model": "not-served"}),
        json!({"data_dir": "/elsewhere"}),
        json!({"theme": 1}),
    ] {
        let (status, error) =
            call(&state, Method::PATCH, "/api/settings", Some(body.clone())).await;
        assert!(status.is_client_error(), "{body}: {error}");
    }
    let (_, shown) = call(&state, Method::GET, "/api/settings", None).await;
    assert_eq!(shown["theme"], "dark", "a refused patch changes nothing");
    let (_, removed) = call(
        &state,
        Method::PATCH,
        "/api/settings",
        Some(json!({"api_key": null, "current_api_key": "sk-mine"})),
    )
    .await;
    assert_eq!(removed["api_key_set"], false, "{removed}");
}
