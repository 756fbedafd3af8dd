//! The conversation endpoints: history kept by the server (`hearth-store`), so the UI never
//! holds the only copy.
//!
//! - `GET /api/conversations` (`?search=`, `?deleted=true` for the trash, `?limit=`),
//!   `POST /api/conversations` (`title`, `model`, `system_prompt`, `settings`).
//! - `GET`/`PATCH`/`DELETE /api/conversations/{id}` (`DELETE` keeps it for undo;
//!   `?purge=true` removes it for good), `POST /api/conversations/{id}/restore`.
//! - `GET /api/conversations/{id}/export?format=markdown|json`.
//! - `POST /api/conversations/{id}/messages` (`content`, optional `model`): saves the user
//!   message, answers through the same model manager and request validation as
//!   `/v1/chat/completions`, and streams server-sent events (`start`, `token`…, then `done`
//!   or `error`). The answer is saved while it streams, every [`STREAMING_SAVE_INTERVAL`] and
//!   at its end, by a task of its own, so it is kept whether or not the client stays: a client
//!   that leaves stops the answer (status `stopped`), and a server killed mid-answer loses at
//!   most the last interval.
//!
//! A conversation's `settings` are the sampling fields of a chat completion request
//! ([`SAMPLING_SETTING_KEYS`]), validated by the same parser.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hearth_protocol::{FinishReason, RequestMetrics};
use hearth_store::{
    ConversationId, ConversationStore, ListQuery, MessageId, MessageStatus, NewConversation,
    NewMessage, Role, SettingsUpdate, StoreError,
};
use hearth_supervisor::{GenerationEvent, GenerationStream, SupervisorError};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};

use crate::error::{ApiError, TYPE_INVALID_REQUEST, TYPE_SERVER};
use crate::handlers::{wait_for_start, JsonBody, OptionalJsonBody, Started};
use crate::models::ModelLease;
use crate::request::parse_chat_request;
use crate::AppState;

/// How often a streaming answer is saved while text arrives: the most a crash can lose.
pub const STREAMING_SAVE_INTERVAL: Duration = Duration::from_millis(500);
/// Events buffered between the answer's task and a slow client before the task waits.
const EVENT_BUFFER: usize = 64;
/// The fields of a chat completion request a conversation's `settings` may hold.
pub const SAMPLING_SETTING_KEYS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "max_tokens",
    "stop",
    // For benchmarks and tests: answers that run to max_tokens.
    "ignore_eos",
];
/// The prompt param named by errors of the messages endpoint.
const CONTENT_PARAM: &str = "content";

/// The conversation routes, merged into [`crate::router`] (so the same security layers apply).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/conversations",
            get(list_conversations).post(create_conversation),
        )
        .route(
            "/api/conversations/{id}",
            get(show_conversation)
                .patch(update_conversation)
                .delete(delete_conversation),
        )
        .route(
            "/api/conversations/{id}/restore",
            post(restore_conversation),
        )
        .route("/api/conversations/{id}/export", get(export_conversation))
        .route("/api/conversations/import", post(import_conversation))
        .route("/api/conversations/{id}/messages", post(send_message))
        .route("/api/conversations/{id}/regenerate", post(regenerate))
        .route(
            "/api/conversations/{id}/messages/{message_id}/edit",
            post(edit_message),
        )
}

/// The conversation database's file name inside the data directory.
pub const STORE_FILE_NAME: &str = "hearth.sqlite3";

/// Opens (creating and migrating it if needed) `<data_dir>/hearth.sqlite3`.
pub fn open_store(data_dir: &std::path::Path) -> Result<Arc<ConversationStore>, StoreError> {
    ConversationStore::open(&data_dir.join(STORE_FILE_NAME)).map(Arc::new)
}

fn store(state: &AppState) -> Result<Arc<ConversationStore>, ApiError> {
    state.conversations.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            TYPE_SERVER,
            "This server keeps no conversation history.",
        )
        .with_code("history_unavailable")
    })
}

fn conversation_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        TYPE_INVALID_REQUEST,
        "There is no such conversation.",
    )
    .with_code("conversation_not_found")
}

/// Ids are positive integers; anything else is a conversation that does not exist.
fn conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    raw.parse::<ConversationId>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(conversation_not_found)
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::ConversationNotFound(_) => conversation_not_found(),
        StoreError::ConversationDeleted(_) => ApiError::new(
            StatusCode::CONFLICT,
            TYPE_INVALID_REQUEST,
            "This conversation is deleted; restore it first.",
        )
        .with_code("conversation_deleted"),
        StoreError::InvalidInput { field, reason } => {
            ApiError::invalid_param(field, format!("'{field}' is invalid: {reason}."))
        }
        StoreError::InvalidImport { field, reason } => ApiError::invalid_param(
            field.clone(),
            format!("This is not a valid Hearth conversation export: '{field}' {reason}."),
        )
        .with_code("invalid_export"),
        StoreError::MessageNotFound(_) => message_not_found(),
        other => {
            // The store's messages can hold the database path: log them, answer plainly.
            tracing::error!(error = %other, "conversation store failure");
            ApiError::internal(
                "history_error",
                "The conversation history could not be read or written.",
            )
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    search: Option<String>,
    deleted: Option<bool>,
    limit: Option<u32>,
}

async fn list_conversations(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request("invalid_query", format!("Invalid query: {rejection}."))
    })?;
    let listed = store(&state)?
        .list_conversations(&ListQuery {
            search: params.search,
            deleted: params.deleted.unwrap_or(false),
            limit: params.limit,
        })
        .map_err(store_error)?;
    Ok(Json(json!({"object": "list", "data": listed})))
}

/// The fields a create or update body may hold, each absent, `null` or a value.
#[derive(Debug, Default)]
struct ConversationFields {
    title: Option<Option<String>>,
    model: Option<Option<String>>,
    system_prompt: Option<Option<String>>,
    settings: Option<Value>,
}

fn parse_conversation_fields(
    state: &AppState,
    body: &Value,
) -> Result<ConversationFields, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::bad_request(
            "invalid_type",
            "The request body must be a JSON object.",
        ));
    };
    let mut fields = ConversationFields::default();
    for (key, value) in object {
        let text = || -> Result<Option<String>, ApiError> {
            match value {
                Value::Null => Ok(None),
                Value::String(text) => Ok(Some(text.clone())),
                _ => Err(ApiError::invalid_param(
                    key.as_str(),
                    format!("'{key}' must be a string or null."),
                )),
            }
        };
        match key.as_str() {
            "title" => fields.title = Some(text()?),
            "model" => {
                let model = text()?;
                if let Some(model) = &model {
                    if state.models.resolve(model).is_none() {
                        return Err(ApiError::model_not_found(model));
                    }
                }
                fields.model = Some(model);
            }
            "system_prompt" => fields.system_prompt = Some(text()?),
            "settings" => {
                let settings = match value {
                    Value::Null => Value::Object(Map::new()),
                    other => other.clone(),
                };
                validate_settings(&settings)?;
                fields.settings = Some(settings);
            }
            _ => {
                return Err(ApiError::invalid_param(
                    key.as_str(),
                    format!("Unknown field '{key}': a conversation has title, model, system_prompt and settings."),
                ))
            }
        }
    }
    Ok(fields)
}

/// Settings must be an object of known sampling fields with values the chat completion
/// parser accepts, so a conversation never holds settings that would fail every answer.
fn validate_settings(settings: &Value) -> Result<(), ApiError> {
    let Some(object) = settings.as_object() else {
        return Err(ApiError::invalid_param(
            "settings",
            "'settings' must be a JSON object.",
        ));
    };
    if let Some(key) = object
        .keys()
        .find(|key| !SAMPLING_SETTING_KEYS.contains(&key.as_str()))
    {
        return Err(ApiError::invalid_param(
            format!("settings.{key}"),
            format!(
                "Unknown setting '{key}'; settings may hold {}.",
                SAMPLING_SETTING_KEYS.join(", ")
            ),
        ));
    }
    let mut probe = object.clone();
    probe.insert("model".into(), json!("settings-check"));
    probe.insert(
        "messages".into(),
        json!([{"role": "user", "content": "settings check"}]),
    );
    parse_chat_request(&Value::Object(probe)).map(|_| ())
}

async fn create_conversation(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let fields = parse_conversation_fields(&state, &body)?;
    let conversation = store(&state)?
        .create_conversation(NewConversation {
            title: fields.title.flatten(),
            // A conversation started without a model takes the one chosen in the settings.
            model: fields
                .model
                .flatten()
                .or_else(|| crate::settings::default_model(&state)),
            system_prompt: fields.system_prompt.flatten(),
            settings: fields.settings,
        })
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(conversation)).into_response())
}

async fn show_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = conversation_id(&raw_id)?;
    let conversation = store(&state)?
        .conversation_with_messages(id)
        .map_err(store_error)?;
    Ok(Json(json!(conversation)))
}

async fn update_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let id = conversation_id(&raw_id)?;
    let store = store(&state)?;
    let fields = parse_conversation_fields(&state, &body)?;
    if let Some(title) = &fields.title {
        let title = title.as_deref().unwrap_or("");
        store.rename_conversation(id, title).map_err(store_error)?;
    }
    let conversation = store
        .update_settings(
            id,
            SettingsUpdate {
                model: fields.model,
                system_prompt: fields.system_prompt,
                settings: fields.settings,
            },
        )
        .map_err(store_error)?;
    Ok(Json(json!(conversation)))
}

#[derive(Debug, Deserialize)]
pub struct DeleteParams {
    purge: Option<bool>,
}

async fn delete_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    params: Result<Query<DeleteParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request("invalid_query", format!("Invalid query: {rejection}."))
    })?;
    let id = conversation_id(&raw_id)?;
    let store = store(&state)?;
    if params.purge.unwrap_or(false) {
        store.purge(id).map_err(store_error)?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let conversation = store.soft_delete(id).map_err(store_error)?;
    Ok(Json(conversation).into_response())
}

async fn restore_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = conversation_id(&raw_id)?;
    let conversation = store(&state)?.restore(id).map_err(store_error)?;
    Ok(Json(json!(conversation)))
}

#[derive(Debug, Deserialize)]
pub struct ExportParams {
    format: Option<String>,
}

async fn export_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    params: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request("invalid_query", format!("Invalid query: {rejection}."))
    })?;
    let id = conversation_id(&raw_id)?;
    let store = store(&state)?;
    let (body, content_type, extension) = match params.format.as_deref().unwrap_or("markdown") {
        "markdown" | "md" => (
            store.export_markdown(id).map_err(store_error)?,
            "text/markdown; charset=utf-8",
            "md",
        ),
        "json" => (
            serde_json::to_string_pretty(&store.export_json(id).map_err(store_error)?)
                .unwrap_or_default(),
            "application/json",
            "json",
        ),
        _ => {
            return Err(ApiError::invalid_param(
                "format",
                "'format' must be \"markdown\" or \"json\".",
            ))
        }
    };
    // The file name is made of the id only: a title can hold anything.
    let disposition = format!("attachment; filename=\"conversation-{id}.{extension}\"");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The text of a message from a request body's `content`.
fn message_content(object: &Map<String, Value>) -> Result<String, ApiError> {
    match object.get(CONTENT_PARAM) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(Value::String(_)) => Err(ApiError::invalid_param(
            CONTENT_PARAM,
            "'content' is empty.",
        )),
        Some(_) => Err(ApiError::invalid_param(
            CONTENT_PARAM,
            "'content' must be a string.",
        )),
        None => Err(ApiError::invalid_param(
            CONTENT_PARAM,
            "'content' is required: the text of your message.",
        )
        .with_code("missing_required_parameter")),
    }
}

/// The body of an answering request: a JSON object with only `allowed` keys (`model` among
/// them), and the model it names, if any.
fn answer_body<'a>(
    body: &'a Value,
    allowed: &[&str],
) -> Result<(&'a Map<String, Value>, Option<String>), ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::bad_request(
            "invalid_type",
            "The request body must be a JSON object.",
        ));
    };
    if let Some(key) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(ApiError::invalid_param(
            key.as_str(),
            format!(
                "Unknown field '{key}': this request takes {}.",
                allowed.join(" and ")
            ),
        ));
    }
    let model = match object.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(model)) => Some(model.clone()),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "model",
                "'model' must be a string.",
            ))
        }
    };
    Ok((object, model))
}

/// `POST /api/conversations/{id}/messages`: saves the user's message and streams the answer.
async fn send_message(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = conversation_id(&raw_id)?;
    let (object, model) = answer_body(&body, &[CONTENT_PARAM, "model"])?;
    let content = message_content(object)?;
    answer(&state, id, Turn::New { content }, model).await
}

/// `POST /api/conversations/{id}/regenerate` (body optional: `model`): removes the last
/// answer (everything after the last user message) and answers that message again.
async fn regenerate(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let id = conversation_id(&raw_id)?;
    let (_, model) = answer_body(&body, &["model"])?;
    answer(&state, id, Turn::Regenerate, model).await
}

/// `POST /api/conversations/{id}/messages/{message_id}/edit` (`content`, optional `model`):
/// gives a user message new text, removes every later message, and answers it.
async fn edit_message(
    State(state): State<AppState>,
    Path((raw_id, raw_message_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = conversation_id(&raw_id)?;
    let message_id = raw_message_id
        .parse::<MessageId>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(message_not_found)?;
    let (object, model) = answer_body(&body, &[CONTENT_PARAM, "model"])?;
    let content = message_content(object)?;
    answer(
        &state,
        id,
        Turn::Edit {
            message_id,
            content,
        },
        model,
    )
    .await
}

/// `POST /api/conversations/import`: a JSON export becomes a new conversation (201). A body
/// that is not a valid export is a 400 and creates nothing.
async fn import_conversation(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let mut imported = hearth_store::export::parse_json(&body).map_err(store_error)?;
    if let Some(settings) = &imported.conversation.settings {
        validate_settings(settings)?;
    }
    // A model this machine does not have is dropped, so the conversation uses the default.
    if let Some(model) = &imported.conversation.model {
        if state.models.resolve(model).is_none() {
            imported.conversation.model = None;
        }
    }
    let conversation = store.import_conversation(imported).map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(conversation)).into_response())
}

/// What an answer answers.
#[derive(Debug)]
enum Turn {
    /// A new user message, appended.
    New { content: String },
    /// The last user message, again (its answer and anything after it are removed).
    Regenerate,
    /// A user message with new text (every later message is removed).
    Edit {
        message_id: MessageId,
        content: String,
    },
}

/// How the history changes once the model is ready to answer.
#[derive(Debug)]
enum HistoryChange {
    /// The user's new message is appended.
    Append(String),
    /// Everything after the question goes (and the question may get new text).
    TruncateAfter {
        message_id: MessageId,
        replace_content: Option<String>,
    },
}

fn message_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        TYPE_INVALID_REQUEST,
        "There is no such message in this conversation.",
    )
    .with_param("message_id")
    .with_code("message_not_found")
}

/// The model an answer uses: the one asked for, else the conversation's, else the default
/// model of the settings, else the first one served.
fn choose_model(
    state: &AppState,
    requested: Option<String>,
    conversation_model: Option<&str>,
) -> Result<String, ApiError> {
    requested
        .or_else(|| conversation_model.map(str::to_string))
        .or_else(|| crate::settings::default_model(state))
        .or_else(|| state.models.list().into_iter().next().map(|model| model.id))
        .ok_or_else(|| {
            ApiError::invalid_param(
                "model",
                "No model is installed: install one (`hearth pull`) or start the server with --model.",
            )
        })
}

/// The shared path of messages, regenerate and edit: builds the prompt from the history
/// through the chat completion validation, waits for the model, only then changes the
/// history (so a 503 retried by the client changes nothing twice), starts the generation and
/// streams it as server-sent events while a task of its own saves it.
async fn answer(
    state: &AppState,
    id: ConversationId,
    turn: Turn,
    requested_model: Option<String>,
) -> Result<Response, ApiError> {
    let store = store(state)?;
    let history = store.conversation_with_messages(id).map_err(store_error)?;
    if history.conversation.deleted_at.is_some() {
        return Err(store_error(StoreError::ConversationDeleted(id)));
    }
    // Which stored messages come before the question, its text, and how the history changes
    // once the model is ready.
    let (earlier, question, change) = match turn {
        Turn::New { content } => (
            history.messages.as_slice(),
            content.clone(),
            HistoryChange::Append(content),
        ),
        Turn::Regenerate => {
            let position = history
                .messages
                .iter()
                .rposition(|message| message.role == Role::User && !message.hidden)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "nothing_to_regenerate",
                        "This conversation has no user message to answer again.",
                    )
                })?;
            let question = &history.messages[position];
            (
                &history.messages[..position],
                question.content.clone(),
                HistoryChange::TruncateAfter {
                    message_id: question.id,
                    replace_content: None,
                },
            )
        }
        Turn::Edit {
            message_id,
            content,
        } => {
            let position = history
                .messages
                .iter()
                .position(|message| message.id == message_id)
                .ok_or_else(message_not_found)?;
            if history.messages[position].role != Role::User {
                return Err(ApiError::invalid_param(
                    "message_id",
                    "Only a user message can be edited.",
                ));
            }
            (
                &history.messages[..position],
                content.clone(),
                HistoryChange::TruncateAfter {
                    message_id,
                    replace_content: Some(content),
                },
            )
        }
    };
    let model = choose_model(
        state,
        requested_model,
        history.conversation.model.as_deref(),
    )?;

    // The same request as a chat completion, through the same validation.
    let mut request_body = Map::new();
    if let Some(settings) = history.conversation.settings.as_object() {
        for (key, value) in settings {
            if SAMPLING_SETTING_KEYS.contains(&key.as_str()) {
                request_body.insert(key.clone(), value.clone());
            }
        }
    }
    let mut messages = Vec::new();
    if let Some(system_prompt) = history
        .conversation
        .system_prompt
        .as_deref()
        .filter(|prompt| !prompt.trim().is_empty())
    {
        messages.push(json!({"role": "system", "content": system_prompt}));
    }
    for message in earlier
        .iter()
        .filter(|message| !message.hidden && !message.content.is_empty())
    {
        messages.push(json!({"role": message.role.as_str(), "content": message.content}));
    }
    messages.push(json!({"role": "user", "content": question}));
    request_body.insert("model".into(), json!(model));
    request_body.insert("messages".into(), Value::Array(messages));
    request_body.insert("stream".into(), json!(true));
    // A long conversation keeps going: the oldest turns make room, and `start` says so.
    request_body.insert("context_overflow".into(), json!("drop_oldest_turns"));
    let request = parse_chat_request(&Value::Object(request_body))?;

    // Acquire before saving anything: a 503 while the model loads is retried by the client,
    // and a retry must not save the user's message twice.
    let lease = state.models.acquire(&request.model).await?;
    let user_message = match change {
        HistoryChange::Append(content) => store.append_message(
            id,
            NewMessage {
                role: Role::User,
                content,
                status: MessageStatus::Complete,
                metrics: None,
            },
        ),
        HistoryChange::TruncateAfter {
            message_id,
            replace_content,
        } => store
            .truncate_after(id, message_id, replace_content.as_deref())
            .map(|truncated| truncated.message),
    }
    .map_err(store_error)?;
    if history.conversation.model.is_none() {
        let _ = store.update_settings(
            id,
            SettingsUpdate {
                model: Some(Some(lease.id().to_string())),
                ..SettingsUpdate::default()
            },
        );
    }
    let mut stream = lease
        .supervisor()
        .generate(request.generation())
        .await
        .map_err(|error| ApiError::from_supervisor(error, CONTENT_PARAM))?;
    let Started {
        prompt_tokens,
        dropped_messages,
    } = wait_for_start(&mut stream, CONTENT_PARAM).await?;
    let answer = store
        .append_message(
            id,
            NewMessage {
                role: Role::Assistant,
                content: String::new(),
                status: MessageStatus::Streaming,
                metrics: None,
            },
        )
        .map_err(store_error)?;
    let (sender, receiver) = mpsc::channel::<Value>(EVENT_BUFFER);
    let start = json!({
        "type": "start",
        "conversation_id": id,
        "model": lease.id(),
        "user_message": user_message,
        "assistant_message": answer,
        "prompt_tokens": prompt_tokens,
        "dropped_messages": dropped_messages,
        // The context one answer may fill, for the UI's context meter.
        "n_ctx": lease.info().n_ctx_per_sequence,
    });
    let _ = sender.try_send(start);
    let (running, stop) = state.answers.begin();
    tokio::spawn(run_answer(AnswerTask {
        store,
        message_id: answer.id,
        stream,
        lease,
        metrics: state.metrics.clone(),
        sender,
        stop,
        running,
    }));
    Ok(sse_response(receiver))
}

/// The answers being generated: a shutdown stops them all (each is saved as `stopped`) and
/// waits for them to be saved before the engine workers go.
#[derive(Debug)]
pub struct AnswerTasks {
    stop: watch::Sender<bool>,
    running: watch::Sender<usize>,
}

impl Default for AnswerTasks {
    fn default() -> Self {
        Self {
            stop: watch::channel(false).0,
            running: watch::channel(0).0,
        }
    }
}

/// Counts one answer as running for as long as it lives.
#[derive(Debug)]
struct RunningAnswer {
    tasks: Arc<AnswerTasks>,
}

impl Drop for RunningAnswer {
    fn drop(&mut self) {
        self.tasks
            .running
            .send_modify(|running| *running = running.saturating_sub(1));
    }
}

impl AnswerTasks {
    fn begin(self: &Arc<Self>) -> (RunningAnswer, watch::Receiver<bool>) {
        self.running.send_modify(|running| *running += 1);
        (
            RunningAnswer {
                tasks: self.clone(),
            },
            self.stop.subscribe(),
        )
    }

    /// Stops every answer, now and from now on.
    pub fn stop_all(&self) {
        self.stop.send_replace(true);
    }

    /// Waits until no answer runs, at most `limit`; whether they all ended.
    pub async fn wait_finished(&self, limit: Duration) -> bool {
        let mut running = self.running.subscribe();
        let ended = tokio::time::timeout(limit, async move {
            let _ = running.wait_for(|running| *running == 0).await;
        })
        .await;
        ended.is_ok()
    }
}

/// One answer being generated and saved, independent of the client's connection.
struct AnswerTask {
    store: Arc<ConversationStore>,
    message_id: MessageId,
    stream: GenerationStream,
    /// Held until the answer ends, so the model is not unloaded under it.
    lease: ModelLease,
    metrics: Arc<crate::Metrics>,
    sender: mpsc::Sender<Value>,
    /// Turns true when the server shuts down.
    stop: watch::Receiver<bool>,
    /// Counts the answer as running until it is saved.
    running: RunningAnswer,
}

enum AnswerEnd {
    Done(FinishReason, RequestMetrics),
    Failed(SupervisorError),
    ClientLeft,
    /// The answer's message was removed (regenerated or edited away while it streamed).
    Removed,
}

async fn run_answer(task: AnswerTask) {
    let AnswerTask {
        store,
        message_id,
        mut stream,
        lease,
        metrics,
        sender,
        mut stop,
        running,
    } = task;
    let mut content = String::new();
    let mut unsaved = false;
    let mut save_timer = tokio::time::interval(STREAMING_SAVE_INTERVAL);
    save_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(GenerationEvent::Text { text, .. })) => {
                    if text.is_empty() {
                        continue;
                    }
                    content.push_str(&text);
                    unsaved = true;
                    if sender.send(json!({"type": "token", "text": text})).await.is_err() {
                        break AnswerEnd::ClientLeft;
                    }
                }
                Some(Ok(GenerationEvent::Started { .. })) => {}
                Some(Ok(GenerationEvent::Done { finish_reason, metrics })) => {
                    break AnswerEnd::Done(finish_reason, metrics)
                }
                Some(Err(error)) => break AnswerEnd::Failed(error),
                None => break AnswerEnd::Failed(SupervisorError::WorkerCrashed {
                    status: "worker exited".into(),
                }),
            },
            _ = save_timer.tick() => {
                if unsaved {
                    match store.update_streaming_message(message_id, &content) {
                        Ok(()) => {}
                        // Nothing to save it to any more: stop generating it.
                        Err(StoreError::MessageNotFound(_)) => break AnswerEnd::Removed,
                        Err(error) => tracing::warn!(%error, "cannot save a streaming answer"),
                    }
                    unsaved = false;
                }
            }
            () = sender.closed() => break AnswerEnd::ClientLeft,
            // A shutdown stops the answer like a client that leaves: saved as `stopped`.
            () = stopping(&mut stop) => break AnswerEnd::ClientLeft,
        }
    };
    // Dropping the stream before its end cancels the generation in the engine.
    drop(stream);
    let (status, figures, event) = match end {
        AnswerEnd::Done(finish_reason, figures) => {
            metrics.record_generation(lease.id(), finish_reason, &figures);
            let figures = answer_metrics(finish_reason, &figures);
            (MessageStatus::Complete, Some(figures), None)
        }
        AnswerEnd::Failed(error) => {
            metrics.record_stream_error();
            let api = ApiError::from_supervisor(error, CONTENT_PARAM);
            (MessageStatus::Error, None, Some(api.body()))
        }
        AnswerEnd::ClientLeft => {
            metrics.record_client_disconnect(lease.id());
            (MessageStatus::Stopped, None, None)
        }
        AnswerEnd::Removed => {
            let removed = ApiError::new(
                StatusCode::CONFLICT,
                TYPE_INVALID_REQUEST,
                "This answer was removed (regenerated or edited away) while it was written.",
            )
            .with_code("answer_removed");
            let _ = sender
                .send(json!({"type": "error", "error": removed.body()["error"]}))
                .await;
            drop(running);
            return;
        }
    };
    drop(lease);
    match store.finish_message(message_id, &content, status, figures.as_ref()) {
        Ok(saved) => {
            let final_event = match event {
                Some(error) => json!({"type": "error", "error": error["error"], "message": saved}),
                None => json!({"type": "done", "message": saved}),
            };
            let _ = sender.send(final_event).await;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot save a finished answer");
            let api = store_error(error);
            let _ = sender
                .send(json!({"type": "error", "error": api.body()["error"]}))
                .await;
        }
    }
    drop(running);
}

/// Resolves once `stop` turns true (never, if its sender is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    loop {
        let stopped = *stop.borrow_and_update();
        if stopped {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The figures kept with an answer: everything but the list of every inter-token gap.
fn answer_metrics(finish_reason: FinishReason, figures: &RequestMetrics) -> Value {
    let mut value = serde_json::to_value(figures).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.remove("itl_ms");
        object.insert("finish_reason".into(), json!(finish_reason.as_str()));
    }
    value
}

fn sse_response(receiver: mpsc::Receiver<Value>) -> Response {
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        let bytes = Bytes::from(format!("data: {event}\n\n"));
        Some((Ok::<Bytes, Infallible>(bytes), receiver))
    });
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests;
