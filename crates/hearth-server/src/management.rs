//! The model-management endpoints for the UI: the library (installed, broken, catalog),
//! imports, and background downloads with progress as server-sent events.
//!
//! - `GET /api/models`: `{"models": [...], "broken": [...], "catalog": [... "installed"]}`.
//! - `DELETE /api/models/{id}`, `POST /api/models/import` (`path`, `in_place`, `id`).
//! - `GET`/`POST /api/downloads` (`model`: a catalog id `[:QUANT]`, or `owner/repo[:QUANT]`
//!   for a catalog repository, or `owner/repo:FILE.gguf`): 202 with the download's status.
//! - `GET /api/downloads/{id}`, `POST /api/downloads/{id}/pause|resume|cancel`.
//! - `GET /api/downloads/{id}/events`: the status now, then every change, as `data:` events;
//!   the stream ends once the download is installed, failed or cancelled.
//!
//! Everything goes through the [`DownloadManager`] in [`AppState::downloads`] (`None`: 503).
//! Library calls block, so they run on `spawn_blocking`. No answer carries a file-system
//! path: manifests lose theirs, and error texts go through [`redact_paths`].

mod wire;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use hearth_models::{
    Catalog, CatalogModel, DownloadId, DownloadManager, DownloadState, DownloadStatus, HubRepo,
    ImportMode, ImportRequest, InstalledModel, ModelId, ModelLibrary, ModelSource, ModelsError,
    NoProgress, PullRequest,
};
use hearth_probe::{variant_from_file, Wishes};
use serde_json::{Map, Value};

use crate::error::{redact_paths, ApiError, TYPE_INVALID_REQUEST, TYPE_SERVER};
use crate::fit;
use crate::handlers::JsonBody;
use crate::{sse, AppState};

pub use wire::{BrokenModel, CatalogEntry, CatalogFile, DownloadList, ModelsListing};

/// The management routes, merged into [`crate::router`] (so the same security layers apply).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/models", get(list_models))
        .route("/api/models/import", post(import_model))
        .route("/api/models/{id}", delete(delete_model))
        .route("/api/downloads", get(list_downloads).post(start_download))
        .route("/api/downloads/{id}", get(show_download))
        .route("/api/downloads/{id}/pause", post(pause_download))
        .route("/api/downloads/{id}/resume", post(resume_download))
        .route("/api/downloads/{id}/cancel", post(cancel_download))
        .route("/api/downloads/{id}/events", get(download_events))
}

pub(crate) fn manager(state: &AppState) -> Result<Arc<DownloadManager>, ApiError> {
    state.downloads.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            TYPE_SERVER,
            "This server does not manage models.",
        )
        .with_code("model_management_unavailable")
    })
}

fn model_not_installed() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        TYPE_INVALID_REQUEST,
        "There is no such installed model.",
    )
    .with_code("model_not_found")
}

fn download_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        TYPE_INVALID_REQUEST,
        "There is no such download.",
    )
    .with_code("download_not_found")
}

fn model_id(raw: &str, param: &str) -> Result<ModelId, ApiError> {
    ModelId::new(raw).map_err(|error| match error {
        ModelsError::InvalidModelId { reason, .. } => ApiError::invalid_param(
            param,
            format!("'{param}' is not a valid model id: {reason}."),
        ),
        _ => ApiError::invalid_param(param, format!("'{param}' is not a valid model id.")),
    })
}

fn download_id(raw: &str) -> Result<DownloadId, ApiError> {
    raw.parse::<DownloadId>().map_err(|_| download_not_found())
}

/// Maps a library error to an answer without paths.
pub(crate) fn models_error(error: ModelsError) -> ApiError {
    match error {
        ModelsError::InvalidModelId { reason, .. } => {
            ApiError::invalid_param("id", format!("'id' is not a valid model id: {reason}."))
        }
        ModelsError::ModelNotInstalled { .. } => model_not_installed(),
        ModelsError::UnknownDownload { .. } => download_not_found(),
        ModelsError::ModelIdTaken { id, .. } => ApiError::new(
            StatusCode::CONFLICT,
            TYPE_INVALID_REQUEST,
            format!("The model id `{id}` is already taken; choose another with 'id'."),
        )
        .with_param("id")
        .with_code("model_id_taken"),
        ModelsError::UnknownCatalogModel { .. } => ApiError::invalid_param(
            "model",
            "That model is not in the catalog; GET /api/models lists it.",
        ),
        error @ (ModelsError::UnknownQuantization { .. }
        | ModelsError::InvalidRepository { .. }
        | ModelsError::InvalidFileName { .. }) => {
            ApiError::invalid_param("model", redact_paths(&error.to_string()))
        }
        ModelsError::InvalidGguf { reason, .. } => ApiError::invalid_param(
            "path",
            format!(
                "The file is not a valid GGUF model: {}.",
                redact_paths(&reason)
            ),
        ),
        ModelsError::NotAFile { .. } => {
            ApiError::invalid_param("path", "The path does not name a regular file.")
        }
        // Reached only for a readable GGUF file named as a split model's part; the reason
        // names its sibling parts by file name, never by path.
        ModelsError::IncompleteSplit { reason, .. } => ApiError::invalid_param(
            "path",
            format!(
                "The file is part of a split model that cannot be used: {}.",
                redact_paths(&reason)
            ),
        ),
        ModelsError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ApiError::invalid_param("path", "The file does not exist.")
        }
        other => {
            tracing::error!(error = %other, "model library failure");
            ApiError::internal("model_library_error", redact_paths(&other.to_string()))
        }
    }
}

/// What an import of an unusable path answers, whatever the reason: whether a path exists,
/// is a folder, cannot be read or holds something else (and its first bytes) is not told to
/// the caller, who may be another user of the machine. The log has the reason.
const UNREADABLE_IMPORT: &str = "The path is not a GGUF model Hearth can read.";

/// [`models_error`] for an import, with one answer for every unusable path.
fn import_error(error: ModelsError) -> ApiError {
    match error {
        ModelsError::InvalidGguf { .. } | ModelsError::NotAFile { .. } | ModelsError::Io { .. } => {
            tracing::info!(%error, "an import was refused");
            ApiError::invalid_param("path", UNREADABLE_IMPORT)
        }
        other => models_error(other),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        tracing::error!(%error, "model management task failed");
        ApiError::internal("internal_error", "The model library task failed.")
    })?
}

/// An installed model as the UI sees it: its manifest without any path (nor the in-place
/// file's recorded modification time, which only the library checks).
pub(crate) fn installed_json(model: &InstalledModel) -> Value {
    let mut value =
        serde_json::to_value(&model.manifest).unwrap_or_else(|_| Value::Object(Map::new()));
    if let Some(object) = value.as_object_mut() {
        object.remove("external_path");
        object.remove("modified_unix_nanos");
        object.remove("parts");
        if let Some(source) = object.get_mut("source").and_then(Value::as_object_mut) {
            source.remove("original_path");
        }
    }
    value
}

/// A download's status without paths (an installed one's file, an error's).
pub(crate) fn status_json(status: &DownloadStatus) -> Value {
    let mut status = status.clone();
    match &mut status.state {
        DownloadState::Failed { error } => *error = redact_paths(error),
        DownloadState::Retrying { reason, .. } => *reason = redact_paths(reason),
        _ => {}
    }
    let mut value = serde_json::to_value(&status).unwrap_or_else(|_| Value::Object(Map::new()));
    if let Some(object) = value.as_object_mut() {
        object.remove("model_path");
    }
    value
}

pub(crate) fn catalog() -> Result<Catalog, ApiError> {
    Catalog::builtin().map_err(models_error)
}

async fn list_models(State(state): State<AppState>) -> Result<Json<ModelsListing>, ApiError> {
    let manager = manager(&state)?;
    // Fits need the machine: probed on the first call (seconds), remembered after.
    let report = state.machine.current_report().await;
    let load_params = state.models.load_params();
    let wishes = Wishes {
        context: Some(load_params.n_ctx),
        n_parallel: load_params.n_parallel,
        ..Wishes::default()
    };
    blocking(move || {
        let library: &ModelLibrary = manager.library();
        let listing = library.list().map_err(models_error)?;
        let catalog = catalog()?;
        let profile = report.as_ref().map(|report| &report.profile);
        let models: Vec<Value> = listing
            .installed
            .iter()
            .map(|model| {
                let mut value = installed_json(model);
                if let Some(profile) = profile {
                    let fit = variant_from_file(&model.model_path)
                        .ok()
                        .and_then(|variant| fit::variant_fit(&variant, profile, &wishes));
                    value["fit"] = serde_json::to_value(fit).unwrap_or(Value::Null);
                }
                value
            })
            .collect();
        let broken = listing
            .broken
            .iter()
            .map(|broken| BrokenModel {
                id: broken.id.clone(),
                reason: redact_paths(&broken.reason),
            })
            .collect();
        let variants: Vec<(&CatalogModel, fit::LocatedVariants)> = match profile {
            Some(_) => catalog
                .models
                .iter()
                .map(|entry| (entry, fit::catalog_variants(entry, &listing.installed)))
                .collect(),
            None => Vec::new(),
        };
        let fit_of = |entry: &CatalogModel, quantization: &str| -> Option<fit::Fit> {
            let profile = profile?;
            variants
                .iter()
                .find(|(known, _)| known.id == entry.id)
                .and_then(|(_, located)| {
                    located.iter().find(|(variant, _)| {
                        variant.quantization.eq_ignore_ascii_case(quantization)
                    })
                })
                .and_then(|(variant, _)| fit::variant_fit(variant, profile, &wishes))
        };
        let entries = catalog
            .models
            .iter()
            .map(|entry| {
                let installed_ids: Vec<String> = listing
                    .installed
                    .iter()
                    .filter(|model| {
                        model.manifest.id.as_str() == entry.id
                            || matches!(&model.manifest.source,
                                ModelSource::Catalog { catalog_id, .. } if *catalog_id == entry.id)
                    })
                    .map(|model| model.manifest.id.as_str().to_string())
                    .collect();
                CatalogEntry {
                    context_length: entry.context_length,
                    default_quantization: entry.default_quantization.clone(),
                    display_name: entry.display_name.clone(),
                    family: entry.family.clone(),
                    files: entry
                        .files
                        .iter()
                        .map(|file| CatalogFile {
                            fit: fit_of(entry, &file.quantization),
                            quantization: file.quantization.clone(),
                            size_bytes: file.size_bytes,
                        })
                        .collect(),
                    fit: fit_of(entry, &entry.default_quantization),
                    id: entry.id.clone(),
                    installed: !installed_ids.is_empty(),
                    installed_ids,
                    license: entry.license.clone(),
                    parameters_billions: entry.parameters_billions,
                    purpose: entry.purpose.clone(),
                    repo: entry.repo.clone(),
                }
            })
            .collect();
        let recommendation =
            profile.and_then(|profile| fit::recommend(&variants, profile, &wishes));
        Ok(Json(ModelsListing {
            broken,
            catalog: entries,
            models,
            recommendation,
        }))
    })
    .await
}

async fn delete_model(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let id = ModelId::new(raw_id).map_err(|_| model_not_installed())?;
    // A loaded model is unloaded first: its worker holds the file mapped, and the memory
    // would stay taken by a model that no longer exists.
    state.models.unload(id.as_str()).await?;
    blocking(move || {
        let library = manager.library();
        library.get(&id).map_err(models_error)?;
        library.delete(&id).map_err(models_error)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn import_model(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let Some(object) = body.as_object() else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "The request body must be a JSON object.",
        ));
    };
    let path = match object.get("path") {
        Some(Value::String(path)) if !path.trim().is_empty() => std::path::PathBuf::from(path),
        _ => {
            return Err(ApiError::invalid_param(
                "path",
                "'path' is required: the GGUF file to import, as an absolute path.",
            ))
        }
    };
    if !path.is_absolute() {
        return Err(ApiError::invalid_param(
            "path",
            "'path' must be an absolute path.",
        ));
    }
    let mode = match object.get("in_place") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => ImportMode::Copy,
        Some(Value::Bool(true)) => ImportMode::InPlace,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "in_place",
                "'in_place' must be a boolean.",
            ))
        }
    };
    let requested_id = match object.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(model_id(id, "id")?),
        Some(_) => return Err(ApiError::invalid_param("id", "'id' must be a string.")),
    };
    let model = blocking(move || {
        let mut request = ImportRequest::file(path, mode);
        request.model_id = requested_id;
        manager
            .library()
            .import(&request, &NoProgress)
            .map_err(import_error)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(installed_json(&model))).into_response())
}

/// A `model` of `POST /api/downloads` as a pull request: a catalog id `[:QUANT]`, a catalog
/// repository `[:QUANT]`, or any repository with its file (`owner/repo:FILE.gguf`).
pub(crate) fn pull_request_for(catalog: &Catalog, target: &str) -> Result<PullRequest, ApiError> {
    let target = target.trim();
    let (name, selector) = match target.split_once(':') {
        Some((name, selector)) => (name, Some(selector)),
        None => (target, None),
    };
    if name.is_empty() || selector.is_some_and(str::is_empty) {
        return Err(ApiError::invalid_param(
            "model",
            "'model' must be a catalog id or owner/repo, with an optional :QUANT or :FILE.",
        ));
    }
    if !name.contains('/') {
        return PullRequest::from_catalog(catalog, name, selector).map_err(models_error);
    }
    let repo = HubRepo::parse(name).map_err(models_error)?;
    let is_file = selector.is_some_and(|selector| selector.to_ascii_lowercase().ends_with(".gguf"));
    if let Some(entry) = catalog
        .models
        .iter()
        .find(|entry| entry.repo.eq_ignore_ascii_case(name))
    {
        let quantization = match selector {
            None => Some(entry.default_quantization.clone()),
            Some(selector) => entry
                .files
                .iter()
                .find(|file| {
                    file.quantization.eq_ignore_ascii_case(selector) || file.file == selector
                })
                .map(|file| file.quantization.clone()),
        };
        if let Some(quantization) = quantization {
            return PullRequest::from_catalog(catalog, &entry.id, Some(&quantization))
                .map_err(models_error);
        }
    }
    match selector {
        Some(file) if is_file => {
            PullRequest::from_hub(repo, None, file, None).map_err(models_error)
        }
        _ => Err(ApiError::invalid_param(
            "model",
            "For a repository outside the catalog, name its file: owner/repo:FILE.gguf.",
        )),
    }
}

async fn start_download(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let Some(target) = body.get("model").and_then(Value::as_str) else {
        return Err(ApiError::invalid_param(
            "model",
            "'model' is required: a catalog id or owner/repo[:QUANT].",
        ));
    };
    let target = target.to_string();
    let status = blocking(move || {
        let request = pull_request_for(&catalog()?, &target)?;
        let id = manager.start(request).map_err(models_error)?;
        manager.status(id).ok_or_else(download_not_found)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(status_json(&status))).into_response())
}

async fn list_downloads(State(state): State<AppState>) -> Result<Json<DownloadList>, ApiError> {
    let manager = manager(&state)?;
    let downloads = manager.list().iter().map(status_json).collect();
    Ok(Json(DownloadList { downloads }))
}

async fn show_download(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let manager = manager(&state)?;
    let id = download_id(&raw_id)?;
    let status = manager.status(id).ok_or_else(download_not_found)?;
    Ok(Json(status_json(&status)))
}

/// Runs a control action, then answers the download's status.
async fn control(
    state: AppState,
    raw_id: String,
    action: fn(&DownloadManager, DownloadId) -> hearth_models::Result<()>,
) -> Result<Json<Value>, ApiError> {
    let manager = manager(&state)?;
    let id = download_id(&raw_id)?;
    // Cancelling may delete a partial file and wait for its lock: off the runtime.
    let status = blocking(move || {
        action(&manager, id).map_err(models_error)?;
        manager.status(id).ok_or_else(download_not_found)
    })
    .await?;
    Ok(Json(status_json(&status)))
}

async fn pause_download(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(state, raw_id, DownloadManager::pause).await
}

async fn resume_download(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(state, raw_id, DownloadManager::resume).await
}

async fn cancel_download(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    control(state, raw_id, DownloadManager::cancel).await
}

/// Whether an events stream ends after this state.
fn ends_stream(state: &DownloadState) -> bool {
    matches!(
        state,
        DownloadState::Installed { .. } | DownloadState::Failed { .. } | DownloadState::Cancelled
    )
}

async fn download_events(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let id = download_id(&raw_id)?;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Value>();
    // The callback runs with the manager locked: an unbounded send never waits.
    manager
        .subscribe_with(id, move |status| {
            sender.send(status_json(status)).is_ok() && !ends_stream(&status.state)
        })
        .map_err(models_error)?;
    Ok(sse::from_unbounded_channel(receiver))
}

#[cfg(test)]
pub(crate) mod tests;
