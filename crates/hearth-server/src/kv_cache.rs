//! `GET /api/kv-cache` and `DELETE /api/kv-cache`: what the disk tier of the KV cache holds
//! (files, bytes, the budget from the settings) and a way to empty it. The engine workers
//! write the folder (`<data_dir>/kv-cache`); the server only lists and removes its files.
//! A worker that later looks for a removed file finds it missing and computes the prompt
//! fresh, so clearing is safe while models are loaded. Both routes are private (`/api/`).

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use hearth_protocol::{KV_CACHE_DIR_NAME, KV_CACHE_FILE_EXTENSION};
use serde::Serialize;

use crate::error::ApiError;
use crate::AppState;

/// The disk tier's folder in a data folder.
pub fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join(KV_CACHE_DIR_NAME)
}

/// What the folder holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KvCacheUsage {
    pub files: u64,
    pub bytes: u64,
}

/// `GET /api/kv-cache`'s answer (fields in sorted order, as every `/api` answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvCacheStatus {
    /// The most the folder may hold (the `kv_cache_disk_budget_mb` setting), in bytes.
    pub budget_bytes: u64,
    pub bytes: u64,
    pub files: u64,
}

/// `DELETE /api/kv-cache`'s answer: what was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvCacheCleared {
    pub removed_bytes: u64,
    pub removed_files: u64,
}

/// The cache's files (and the leftovers of interrupted writes, which start with a dot).
fn cache_files(dir: &Path) -> Vec<(PathBuf, u64, bool)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let metadata = entry.metadata().ok()?;
            let name = entry.file_name().into_string().ok()?;
            let saved =
                name.ends_with(&format!(".{KV_CACHE_FILE_EXTENSION}")) && !name.starts_with('.');
            let leftover = name.starts_with('.') && name.contains(".tmp-");
            (metadata.is_file() && (saved || leftover))
                .then(|| (entry.path(), metadata.len(), saved))
        })
        .collect()
}

/// What the folder holds (interrupted writes not counted).
pub fn usage(dir: &Path) -> KvCacheUsage {
    cache_files(dir)
        .into_iter()
        .filter(|(_, _, saved)| *saved)
        .fold(KvCacheUsage::default(), |usage, (_, bytes, _)| {
            KvCacheUsage {
                files: usage.files + 1,
                bytes: usage.bytes + bytes,
            }
        })
}

/// Removes every file of the cache; returns what was removed.
pub fn clear(dir: &Path) -> KvCacheUsage {
    let mut removed = KvCacheUsage::default();
    for (path, bytes, saved) in cache_files(dir) {
        if std::fs::remove_file(&path).is_ok() && saved {
            removed.files += 1;
            removed.bytes += bytes;
        }
    }
    removed
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/kv-cache", get(show).delete(remove_all))
}

async fn show(State(state): State<AppState>) -> Result<Json<KvCacheStatus>, ApiError> {
    let store = crate::settings::store(&state)?;
    let dir = folder(store.data_dir());
    let budget_bytes = store.load().kv_cache_disk_budget_bytes();
    let usage = tokio::task::spawn_blocking(move || usage(&dir))
        .await
        .map_err(|_| ApiError::internal("kv_cache_error", "The KV cache could not be listed."))?;
    Ok(Json(KvCacheStatus {
        budget_bytes,
        bytes: usage.bytes,
        files: usage.files,
    }))
}

async fn remove_all(State(state): State<AppState>) -> Result<Json<KvCacheCleared>, ApiError> {
    let dir = folder(crate::settings::store(&state)?.data_dir());
    let removed = tokio::task::spawn_blocking(move || clear(&dir))
        .await
        .map_err(|_| ApiError::internal("kv_cache_error", "The KV cache could not be cleared."))?;
    tracing::info!(
        files = removed.files,
        bytes = removed.bytes,
        "KV cache cleared"
    );
    Ok(Json(KvCacheCleared {
        removed_bytes: removed.bytes,
        removed_files: removed.files,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_saved_files_and_clear_removes_them_with_leftovers() {
        let data = tempfile::tempdir().unwrap();
        let dir = folder(data.path());
        assert_eq!(usage(&dir), KvCacheUsage::default(), "no folder yet");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.kv"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("b.kv"), [0u8; 5]).unwrap();
        std::fs::write(dir.join(".a.kv.tmp-12"), [0u8; 7]).unwrap();
        std::fs::write(dir.join("notes.txt"), b"not ours").unwrap();
        assert_eq!(
            usage(&dir),
            KvCacheUsage {
                files: 2,
                bytes: 15
            }
        );
        assert_eq!(
            clear(&dir),
            KvCacheUsage {
                files: 2,
                bytes: 15
            }
        );
        assert_eq!(usage(&dir), KvCacheUsage::default());
        assert!(
            dir.join("notes.txt").exists(),
            "only the cache's files are removed"
        );
        assert!(!dir.join(".a.kv.tmp-12").exists());
    }
}
