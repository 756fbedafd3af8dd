//! The model routes: `/api/tags` (every servable model), `/api/show` (one model's details),
//! `/api/ps` (the loaded ones) and `/api/pull` (a download through Hearth's catalog or a hub
//! reference, with Ollama's progress lines). Details come from each file's GGUF header,
//! read off the runtime; no answer carries a path.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_models::DownloadState;

use super::wire::{
    ModelDetails, PullProgress, Running, RunningModel, Show, ShowModelInfo, TagModel, Tags,
};
use super::{model_id, ndjson};
use crate::error::{redact_paths, ApiError};
use crate::handlers::JsonBody;
use crate::management::{blocking, catalog, manager, models_error, pull_request_for};
use crate::request::parse_ollama_model;
use crate::AppState;

/// What `/api/ps` says of a model that is never unloaded: a time far away.
const FOREVER_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// A model file as Ollama describes it.
#[derive(Debug, Clone, Default)]
struct Described {
    size: u64,
    modified_at: String,
    details: ModelDetails,
    architecture: String,
    parameter_count: u64,
    context_length: u64,
    embedding_length: u64,
}

/// Reads a model's GGUF header (blocking: file reads).
fn describe(path: &Path) -> Described {
    let metadata = std::fs::metadata(path).ok();
    let modified = metadata
        .as_ref()
        .and_then(|metadata| metadata.modified().ok())
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |duration| duration.as_secs());
    let mut described = Described {
        size: metadata.map_or(0, |metadata| metadata.len()),
        modified_at: hearth_models::format_rfc3339_utc(modified),
        ..Described::default()
    };
    described.details.format = "gguf";
    if let Ok(variant) = hearth_probe::variant_from_file(path) {
        let facts = &variant.facts;
        described.details.family = facts.architecture.clone();
        described.details.families = vec![facts.architecture.clone()];
        described.details.parameter_size = parameter_size(facts.parameter_count);
        described.details.quantization_level = variant.quantization.clone();
        described.architecture = facts.architecture.clone();
        described.parameter_count = facts.parameter_count;
        described.context_length = facts.n_ctx_train;
        described.embedding_length = facts.n_embd;
    }
    described
}

/// Ollama's parameter size: `135M`, `8.0B`.
fn parameter_size(count: u64) -> String {
    if count >= 1_000_000_000 {
        format!("{:.1}B", count as f64 / 1e9)
    } else if count > 0 {
        format!("{}M", (count as f64 / 1e6).round())
    } else {
        String::new()
    }
}

/// The installed models' digests, by id (models given by path have none).
fn library_digests(state: &AppState) -> HashMap<String, String> {
    let Some(downloads) = &state.downloads else {
        return HashMap::new();
    };
    downloads
        .library()
        .list()
        .map(|listing| {
            listing
                .installed
                .into_iter()
                .map(|model| {
                    (
                        model.manifest.id.as_str().to_string(),
                        model.manifest.sha256.to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub async fn tags(State(state): State<AppState>) -> Result<Json<Tags>, ApiError> {
    let listing = state.models.list();
    let paths: Vec<(String, Option<std::path::PathBuf>)> = listing
        .iter()
        .map(|model| {
            (
                model.id.clone(),
                state.models.resolve(&model.id).map(|m| m.path),
            )
        })
        .collect();
    let models = blocking(move || {
        let digests = library_digests(&state);
        Ok(paths
            .into_iter()
            .map(|(id, path)| {
                let described = path.as_deref().map(describe).unwrap_or_default();
                TagModel {
                    name: id.clone(),
                    model: id.clone(),
                    modified_at: described.modified_at,
                    size: described.size,
                    digest: digests.get(&id).cloned().unwrap_or_default(),
                    details: described.details,
                }
            })
            .collect())
    })
    .await?;
    Ok(Json(Tags { models }))
}

pub async fn show(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Show>, ApiError> {
    let name = parse_ollama_model(&body)?;
    let id = model_id(&state, &name);
    let model = state
        .models
        .resolve(&id)
        .ok_or_else(|| ApiError::model_not_found(&name))?;
    let described = blocking(move || Ok(describe(&model.path))).await?;
    let mut lengths = BTreeMap::new();
    lengths.insert(
        format!("{}.context_length", described.architecture),
        described.context_length,
    );
    lengths.insert(
        format!("{}.embedding_length", described.architecture),
        described.embedding_length,
    );
    Ok(Json(Show {
        modelfile: String::new(),
        parameters: String::new(),
        template: String::new(),
        details: described.details,
        model_info: ShowModelInfo {
            architecture: described.architecture,
            parameter_count: described.parameter_count,
            lengths,
        },
        capabilities: vec!["completion", "embedding"],
        modified_at: described.modified_at,
    }))
}

pub async fn running(State(state): State<AppState>) -> Result<Json<Running>, ApiError> {
    let idle_unload = state.models.idle_unload();
    let loaded: Vec<_> = state
        .models
        .loaded()
        .into_iter()
        .map(|model| {
            let expires = model
                .idle_limit(idle_unload)
                .map_or(FOREVER_SECONDS, |idle| {
                    let used_ago = Instant::now().saturating_duration_since(model.last_used());
                    idle.saturating_sub(used_ago).as_secs()
                });
            let path = state.models.resolve(&model.id).map(|m| m.path);
            (
                model.id.clone(),
                model.info.n_ctx_per_sequence,
                expires,
                path,
            )
        })
        .collect();
    let models = blocking(move || {
        Ok(loaded
            .into_iter()
            .map(|(id, context_length, expires_in, path)| {
                let described = path.as_deref().map(describe).unwrap_or_default();
                RunningModel {
                    name: id.clone(),
                    model: id,
                    size: described.size,
                    digest: String::new(),
                    details: described.details,
                    expires_at: hearth_models::format_rfc3339_utc(
                        crate::models::unix_now().saturating_add(expires_in),
                    ),
                    size_vram: 0,
                    context_length,
                }
            })
            .collect())
    })
    .await?;
    Ok(Json(Running { models }))
}

/// `POST /api/pull`: starts (or joins) Hearth's download of a catalog model (`id[:QUANT]`) or
/// a hub reference (`owner/repo[:QUANT|:FILE.gguf]`) and reports it as Ollama does:
/// `pulling manifest`, then `pulling <digest>` lines with `total` and `completed`, then
/// `verifying sha256 digest`, `writing manifest` and `success` (or an `error` line).
pub async fn pull(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let name = parse_ollama_model(&body)?;
    let stream = body
        .get("stream")
        .map(|value| {
            value.as_bool().ok_or_else(|| {
                ApiError::invalid_param("stream", "'stream' must be a boolean.")
                    .with_code("invalid_type")
            })
        })
        .transpose()?
        .unwrap_or(true);
    let downloads = manager(&state)?;
    let target = name.strip_suffix(":latest").unwrap_or(&name).to_string();
    let control = downloads.clone();
    let id = blocking(move || {
        let request = pull_request_for(&catalog()?, &target)?;
        control.start(request).map_err(models_error)
    })
    .await?;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<PullProgress>();
    let _ = sender.send(PullProgress {
        status: "pulling manifest".into(),
        ..PullProgress::default()
    });
    downloads
        .subscribe_with(id, move |status| {
            let (lines, last) = progress_lines(status);
            lines.into_iter().all(|line| sender.send(line).is_ok()) && !last
        })
        .map_err(models_error)?;
    if stream {
        return Ok(ndjson(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move {
                let line = receiver.recv().await?;
                Some((line, receiver))
            },
        )));
    }
    // Whole: wait for the end, then answer its last line (an error as an HTTP error).
    let mut last = None;
    while let Some(line) = tokio::time::timeout(PULL_LINE_WAIT, receiver.recv())
        .await
        .unwrap_or(None)
    {
        last = Some(line);
    }
    match last {
        Some(line) if line.status == SUCCESS => Ok(Json(line).into_response()),
        Some(line) => Err(ApiError::internal("pull_failed", line.status)),
        None => Err(ApiError::internal(
            "pull_failed",
            "The download did not report.",
        )),
    }
}

/// How long a whole (`stream: false`) pull waits for the next status before giving up
/// (downloads report progress several times a second).
const PULL_LINE_WAIT: Duration = Duration::from_secs(600);
/// The last line of a pull that worked.
const SUCCESS: &str = "success";

/// Ollama's lines for one status of a download, and whether it is the last.
fn progress_lines(status: &hearth_models::DownloadStatus) -> (Vec<PullProgress>, bool) {
    let pulling = PullProgress {
        status: format!("pulling {}", status.file),
        digest: Some(status.file.clone()),
        total: status.total_bytes,
        completed: Some(status.bytes_done),
    };
    match &status.state {
        DownloadState::Installed { .. } => (
            vec![
                PullProgress {
                    completed: status.total_bytes.or(Some(status.bytes_done)),
                    ..pulling
                },
                PullProgress {
                    status: "verifying sha256 digest".into(),
                    ..PullProgress::default()
                },
                PullProgress {
                    status: "writing manifest".into(),
                    ..PullProgress::default()
                },
                PullProgress {
                    status: SUCCESS.into(),
                    ..PullProgress::default()
                },
            ],
            true,
        ),
        DownloadState::Failed { error } => (
            vec![PullProgress {
                status: format!("error: {}", redact_paths(error)),
                ..PullProgress::default()
            }],
            true,
        ),
        DownloadState::Cancelled => (
            vec![PullProgress {
                status: "error: the download was cancelled".into(),
                ..PullProgress::default()
            }],
            true,
        ),
        _ => (vec![pulling], false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sizes_read_as_ollama_writes_them() {
        assert_eq!(parameter_size(134_515_008), "135M");
        assert_eq!(parameter_size(8_030_261_248), "8.0B");
        assert_eq!(parameter_size(0), "");
    }
}
