//! The answering routes (`/messages`, `/regenerate`, `/edit`) and the one `answer()` path
//! they share: the history changes only once the model is acquired, then the answer's own task
//! (`task.rs`) generates and saves it while its events stream to the client.

use axum::extract::{Path, State};
use axum::response::Response;
use hearth_protocol::{ChatMessage, Role as ChatRole};
use hearth_store::{
    ConversationId, Message, MessageId, MessageStatus, NewMessage, Role, SettingsUpdate, StoreError,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::events::{ChatEvent, ChatEventType, StartEvent};
use super::task::{self, AnswerTask};
use super::{conversation_id, message_not_found, store, store_error, CONTENT_PARAM, EVENT_BUFFER};
use crate::error::ApiError;
use crate::handlers::{wait_for_start, JsonBody, OptionalJsonBody, Started};
use crate::reasoning::{ReasoningFormat, ReasoningStream};
use crate::request::{parse_sampling_settings, CompletionRequest};
use crate::wire::SortedKeys;
use crate::{sse, AppState};

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

/// The field that agrees to send a message to a remote provider (see
/// [`needs_remote_confirmation`]).
const CONFIRM_REMOTE_PARAM: &str = "confirm_remote";

/// `confirm_remote`: absent or `false`, or `true`.
fn confirm_remote(object: &Map<String, Value>) -> Result<bool, ApiError> {
    match object.get(CONFIRM_REMOTE_PARAM) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(confirmed)) => Ok(*confirmed),
        Some(_) => Err(ApiError::invalid_param(
            CONFIRM_REMOTE_PARAM,
            "'confirm_remote' must be true or false.",
        )),
    }
}

/// Whether a message to the remote `provider` needs the user's agreement first: when no
/// answer in this conversation came from that provider yet. The first message a conversation
/// sends to a provider leaves the machine, so the UI asks; the later ones follow it.
pub(crate) fn needs_remote_confirmation(provider: &str, messages: &[Message]) -> bool {
    !messages.iter().any(|message| {
        message
            .metrics
            .as_ref()
            .and_then(|metrics| metrics.get(task::PROVIDER_METRIC))
            .and_then(Value::as_str)
            == Some(provider)
    })
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
pub(super) async fn send_message(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = conversation_id(&raw_id)?;
    let (object, model) = answer_body(&body, &[CONTENT_PARAM, "model", CONFIRM_REMOTE_PARAM])?;
    let content = message_content(object)?;
    let confirmed = confirm_remote(object)?;
    answer(&state, id, Turn::New { content }, model, confirmed).await
}

/// `POST /api/conversations/{id}/regenerate` (body optional: `model`): removes the last
/// answer (everything after the last user message) and answers that message again.
pub(super) async fn regenerate(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let id = conversation_id(&raw_id)?;
    let (object, model) = answer_body(&body, &["model", CONFIRM_REMOTE_PARAM])?;
    let confirmed = confirm_remote(object)?;
    answer(&state, id, Turn::Regenerate, model, confirmed).await
}

/// `POST /api/conversations/{id}/messages/{message_id}/edit` (`content`, optional `model`):
/// gives a user message new text, removes every later message, and answers it.
pub(super) async fn edit_message(
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
    let (object, model) = answer_body(&body, &[CONTENT_PARAM, "model", CONFIRM_REMOTE_PARAM])?;
    let content = message_content(object)?;
    let confirmed = confirm_remote(object)?;
    answer(
        &state,
        id,
        Turn::Edit {
            message_id,
            content,
        },
        model,
        confirmed,
    )
    .await
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
    remote_confirmed: bool,
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

    // The same request as a chat completion: the settings read as its fields are read.
    let no_settings = Map::new();
    let settings = history
        .conversation
        .settings
        .as_object()
        .unwrap_or(&no_settings);
    let mut messages = Vec::new();
    if let Some(system_prompt) = history
        .conversation
        .system_prompt
        .as_deref()
        .filter(|prompt| !prompt.trim().is_empty())
    {
        messages.push(ChatMessage::new(ChatRole::System, system_prompt));
    }
    let visible: Vec<_> = earlier
        .iter()
        .filter(|message| !message.hidden && !message.content.is_empty())
        .collect();
    // A very long conversation sends only its newest turns: the engine would drop the oldest
    // anyway to fit the context, and it refuses a chat of more than MAX_CHAT_MESSAGES.
    let room = hearth_protocol::MAX_CHAT_MESSAGES - messages.len() - 1;
    for message in &visible[visible.len().saturating_sub(room)..] {
        messages.push(ChatMessage::new(
            chat_role(message.role),
            message.content.as_str(),
        ));
    }
    messages.push(ChatMessage::new(ChatRole::User, question));
    let request =
        CompletionRequest::conversation(model, messages, parse_sampling_settings(settings)?)?;

    // Acquire before saving anything: a 503 while the model loads is retried by the client,
    // and a retry must not save the user's message twice.
    let lease = state.models.acquire(&request.model).await?;
    if let Some(provider) = lease.provider() {
        if !remote_confirmed && needs_remote_confirmation(provider, &history.messages) {
            return Err(remote_confirmation_required(provider, lease.provider_url()));
        }
    }
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
        .generate(request.generation())
        .await
        .map_err(|error| ApiError::from_supervisor(error, CONTENT_PARAM))?;
    let Started {
        prompt_tokens,
        dropped_messages,
        thinking,
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
    let (sender, receiver) = mpsc::channel(EVENT_BUFFER);
    let message_id = answer.id;
    let start = ChatEvent::Start(Box::new(StartEvent {
        assistant_message: SortedKeys(answer),
        conversation_id: id,
        dropped_messages,
        model: lease.id().to_string(),
        n_ctx: lease.info().map(|info| info.n_ctx_per_sequence),
        prompt_tokens,
        event_type: ChatEventType::Start,
        user_message: SortedKeys(user_message),
    }));
    let _ = sender.try_send(start);
    task::spawn(
        &state.answers,
        AnswerTask {
            store,
            message_id,
            stream,
            lease,
            metrics: state.metrics.clone(),
            sender,
            reasoning: ReasoningStream::new(thinking.as_ref(), ReasoningFormat::Separate),
        },
    );
    Ok(sse::from_channel(receiver))
}

/// 409: this message would be the conversation's first to `provider`, and leave the machine.
fn remote_confirmation_required(provider: &str, url: Option<&str>) -> ApiError {
    let host = url
        .and_then(|url| url.split("://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("another machine");
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        crate::error::TYPE_INVALID_REQUEST,
        format!(
            "This message would leave this machine: the model runs on the provider `{provider}` ({host}). Send it again with confirm_remote: true to agree."
        ),
    )
    .with_param(CONFIRM_REMOTE_PARAM)
    .with_code("remote_confirmation_required")
}

/// The engine's name of a stored message's role.
fn chat_role(role: Role) -> ChatRole {
    match role {
        Role::System => ChatRole::System,
        Role::User => ChatRole::User,
        Role::Assistant => ChatRole::Assistant,
    }
}
