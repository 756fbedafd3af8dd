//! A model the server can serve by id, and the Unix times `/v1/models` shows.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hearth_models::ModelId;

/// A model the server can serve: its public id and the file behind it (never shown to
/// clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServableModel {
    pub id: String,
    pub path: PathBuf,
    /// Unix seconds, for the `created` field of `/v1/models`.
    pub created: u64,
}

impl ServableModel {
    /// A model given by its file path: the id is made from the file name
    /// (`SmolLM2-135M-Instruct.Q4_1.gguf` → `smollm2-135m-instruct.q4_1`).
    pub fn from_path(path: &Path) -> Self {
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            id: ModelId::suggest_from(&file_name).as_str().to_string(),
            path: path.to_path_buf(),
            created: modified_unix_seconds(path),
        }
    }
}

pub(super) fn modified_unix_seconds(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |duration| duration.as_secs())
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |duration| duration.as_secs())
}
