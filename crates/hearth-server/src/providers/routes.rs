//! `/api/providers`, the UI's provider settings (behind the same key or access token as every
//! private `/api/*` route):
//!
//! - `GET /api/providers`: `{"data": [{"name", "base_url", "has_key", "key_storage", "status",
//!   "error", "models"}]}`; `status` is `ok` or `unreachable` (with the reason in `error`).
//! - `POST /api/providers` (`name`, `base_url`, optional `api_key`): 201 with the provider as
//!   listed (so the UI shows at once whether it answers).
//! - `DELETE /api/providers/{name}`: 204.
//!
//! No answer ever carries a key: only `has_key` and where the key is kept (`key_storage`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ProviderRegistry, ProviderStatus, ProviderStoreError};
use crate::error::{ApiError, TYPE_INVALID_REQUEST};
use crate::handlers::JsonBody;
use crate::wire::List;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/providers", get(list_providers).post(add_provider))
        .route("/api/providers/{name}", delete(remove_provider))
}

/// One provider as the API shows it (fields in sorted order, as every answer's: [`crate::wire`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderView {
    pub base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub has_key: bool,
    /// Where the key is kept: `file` (the private keys file) or `os-keychain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_storage: Option<String>,
    /// Its models' ids as Hearth serves them (`NAME/MODEL`).
    pub models: Vec<String>,
    pub name: String,
    /// `ok` when its model list was read, `unreachable` otherwise.
    pub status: &'static str,
}

impl From<ProviderStatus> for ProviderView {
    fn from(status: ProviderStatus) -> Self {
        let (state, error, models) = match status.models {
            Ok(models) => (
                "ok",
                None,
                models.into_iter().map(|model| model.id).collect(),
            ),
            Err(error) => ("unreachable", Some(error), Vec::new()),
        };
        Self {
            name: status.config.name,
            base_url: status.config.base_url,
            has_key: status.key_storage.is_some(),
            key_storage: status.key_storage,
            status: state,
            error,
            models,
        }
    }
}

/// `POST /api/providers`' body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProvider {
    name: String,
    base_url: String,
    #[serde(default)]
    api_key: Option<String>,
}

fn registry(state: &AppState) -> Result<Arc<ProviderRegistry>, ApiError> {
    state.models.providers().cloned().ok_or_else(|| {
        ApiError::unavailable(
            "providers_unavailable",
            "This server keeps no providers.",
            crate::error::LOADING_RETRY_AFTER_SECS,
        )
    })
}

/// A store error as the API's: the store's messages name no path except on a write failure,
/// which is said without it.
pub(crate) fn store_error(error: ProviderStoreError) -> ApiError {
    match &error {
        ProviderStoreError::InvalidName { .. } => {
            ApiError::invalid_param("name", error.to_string()).with_code("invalid_provider_name")
        }
        ProviderStoreError::InvalidUrl(_) => {
            ApiError::invalid_param("base_url", error.to_string()).with_code("invalid_base_url")
        }
        ProviderStoreError::InvalidKey(_) => {
            ApiError::invalid_param("api_key", error.to_string()).with_code("invalid_api_key")
        }
        ProviderStoreError::Exists(_) => ApiError::new(
            StatusCode::CONFLICT,
            TYPE_INVALID_REQUEST,
            error.to_string(),
        )
        .with_param("name")
        .with_code("provider_exists"),
        ProviderStoreError::NotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            TYPE_INVALID_REQUEST,
            error.to_string(),
        )
        .with_code("provider_not_found"),
        ProviderStoreError::TooMany => {
            ApiError::bad_request("too_many_providers", error.to_string())
        }
        ProviderStoreError::Write { .. } => {
            tracing::error!(%error, "cannot save the providers");
            ApiError::internal(
                "providers_not_saved",
                "The providers could not be saved. See the server's log.",
            )
        }
    }
}

async fn list_providers(
    State(state): State<AppState>,
) -> Result<Json<List<ProviderView>>, ApiError> {
    let registry = registry(&state)?;
    let views = registry
        .statuses()
        .await
        .into_iter()
        .map(ProviderView::from)
        .collect();
    Ok(Json(List::new(views)))
}

async fn add_provider(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let registry = registry(&state)?;
    let request: NewProvider = serde_json::from_value(body).map_err(|error| {
        ApiError::bad_request(
            "invalid_provider",
            format!("The provider is not valid: {error}. It takes `name`, `base_url` and an optional `api_key`."),
        )
    })?;
    let adding = registry.clone();
    let config = tokio::task::spawn_blocking(move || {
        adding
            .store()
            .add(&request.name, &request.base_url, request.api_key.as_deref())
    })
    .await
    .map_err(|_| ApiError::internal("providers_not_saved", "The provider could not be saved."))?
    .map_err(store_error)?;
    registry.forget(&config.name);
    let view = registry
        .statuses()
        .await
        .into_iter()
        .find(|status| status.config.name == config.name)
        .map(ProviderView::from)
        .ok_or_else(|| ApiError::internal("providers_not_saved", "The provider was not saved."))?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn remove_provider(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let registry = registry(&state)?;
    if super::validate_provider_name(&name).is_err() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            TYPE_INVALID_REQUEST,
            "No provider has that name.",
        )
        .with_code("provider_not_found"));
    }
    let removing = registry.clone();
    let removed_name = name.clone();
    tokio::task::spawn_blocking(move || removing.store().remove(&removed_name))
        .await
        .map_err(|_| {
            ApiError::internal("providers_not_saved", "The provider could not be removed.")
        })?
        .map_err(store_error)?;
    registry.forget(&name);
    Ok(StatusCode::NO_CONTENT.into_response())
}
