//! The conversations themselves: list, create, show, update, delete and restore, export and
//! import. Their settings are checked as a chat completion request's fields are.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_store::{
    Conversation, ConversationWithMessages, ListQuery, NewConversation, SettingsUpdate,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{conversation_id, store, store_error, SAMPLING_SETTING_KEYS};
use crate::error::ApiError;
use crate::handlers::JsonBody;
use crate::request::parse_sampling_settings;
use crate::wire::{List, SortedKeys};
use crate::AppState;

/// A query string's parameters, or a 400 that says what is wrong with it.
fn query<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    params.map(|Query(params)| params).map_err(|rejection| {
        ApiError::bad_request("invalid_query", format!("Invalid query: {rejection}."))
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct ListParams {
    search: Option<String>,
    deleted: Option<bool>,
    limit: Option<u32>,
}

pub(super) async fn list_conversations(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<List<SortedKeys<Conversation>>>, ApiError> {
    let params = query(params)?;
    let listed = store(&state)?
        .list_conversations(&ListQuery {
            search: params.search,
            deleted: params.deleted.unwrap_or(false),
            limit: params.limit,
        })
        .map_err(store_error)?;
    Ok(Json(List::new(
        listed.into_iter().map(SortedKeys).collect(),
    )))
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
                    if !state.models.knows(model) {
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
    parse_sampling_settings(object).map(|_| ())
}

pub(super) async fn create_conversation(
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

pub(super) async fn show_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<SortedKeys<ConversationWithMessages>>, ApiError> {
    let id = conversation_id(&raw_id)?;
    let conversation = store(&state)?
        .conversation_with_messages(id)
        .map_err(store_error)?;
    Ok(Json(SortedKeys(conversation)))
}

pub(super) async fn update_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<SortedKeys<Conversation>>, ApiError> {
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
    Ok(Json(SortedKeys(conversation)))
}

#[derive(Debug, Deserialize)]
pub(super) struct DeleteParams {
    purge: Option<bool>,
}

pub(super) async fn delete_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    params: Result<Query<DeleteParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let id = conversation_id(&raw_id)?;
    let store = store(&state)?;
    if params.purge.unwrap_or(false) {
        store.purge(id).map_err(store_error)?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let conversation = store.soft_delete(id).map_err(store_error)?;
    Ok(Json(conversation).into_response())
}

pub(super) async fn restore_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<SortedKeys<Conversation>>, ApiError> {
    let id = conversation_id(&raw_id)?;
    let conversation = store(&state)?.restore(id).map_err(store_error)?;
    Ok(Json(SortedKeys(conversation)))
}

#[derive(Debug, Deserialize)]
pub(super) struct ExportParams {
    format: Option<String>,
}

pub(super) async fn export_conversation(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
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

/// `POST /api/conversations/import`: a JSON export becomes a new conversation (201). A body
/// that is not a valid export is a 400 and creates nothing.
pub(super) async fn import_conversation(
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
        if !state.models.knows(model) {
            imported.conversation.model = None;
        }
    }
    let conversation = store.import_conversation(imported).map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(conversation)).into_response())
}
