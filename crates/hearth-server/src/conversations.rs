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
//! ([`SAMPLING_SETTING_KEYS`]), read by the same code, which fills an answer's typed request.
//!
//! The CRUD routes are in `crud`, the answering routes in `answering`, an answer's own task
//! in `task` and its events in `events`.

mod answering;
mod crud;
pub(crate) mod events;
mod task;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use hearth_store::{ConversationId, ConversationStore, StoreError};

use crate::error::{ApiError, TYPE_INVALID_REQUEST, TYPE_SERVER};
use crate::AppState;
use answering::{edit_message, regenerate, send_message};
use crud::{
    create_conversation, delete_conversation, export_conversation, import_conversation,
    list_conversations, restore_conversation, show_conversation, update_conversation,
};

#[cfg(test)]
pub(crate) use answering::needs_remote_confirmation;
#[cfg(test)]
pub(crate) use task::answer_metrics;
pub use task::AnswerTasks;

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
    // "none" turns a reasoning model's thinking off.
    "reasoning_effort",
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

fn message_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        TYPE_INVALID_REQUEST,
        "There is no such message in this conversation.",
    )
    .with_param("message_id")
    .with_code("message_not_found")
}

#[cfg(test)]
mod tests;
