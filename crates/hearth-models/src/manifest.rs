//! The manifest of an installed model: `<models dir>/<id>/manifest.json`.
//!
//! A model is installed exactly when its manifest exists and is valid; the manifest is written
//! (atomically) only after the model file is complete and verified, so a crash at any point
//! leaves either a fully installed model or none.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::download::{sync_directory, with_suffix};
use crate::error::{ModelsError, Result};
use crate::gguf_summary::GgufSummary;
use crate::id::ModelId;

/// File name of a model's manifest inside its folder.
pub const MANIFEST_FILE_NAME: &str = "manifest.json";
/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// A manifest is a few kilobytes; anything far larger is not one of ours.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Where an installed model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// Pulled for a catalog entry.
    Catalog {
        catalog_id: String,
        quantization: String,
        repo: String,
        revision: String,
        file: String,
        url: String,
        /// The commit the revision pointed to, when the hub said.
        commit: Option<String>,
    },
    /// Pulled from a hub repository named by the user.
    Hub {
        repo: String,
        revision: String,
        file: String,
        url: String,
        commit: Option<String>,
    },
    /// Imported from a local file.
    Import {
        original_path: PathBuf,
        origin: ImportOrigin,
    },
}

/// Which tool's files an import came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tool", rename_all = "snake_case")]
pub enum ImportOrigin {
    /// A GGUF file the user pointed at.
    File,
    /// A model in Ollama's blob store, such as `llama3.2:1b`.
    Ollama { model_name: String },
    /// A model in LM Studio's folder, `publisher/repository`.
    LmStudio { model_name: String },
    /// A file in the Hugging Face cache.
    HuggingFaceCache { repo: String, revision: String },
}

/// Everything Hearth records about an installed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelManifest {
    pub format_version: u32,
    pub id: ModelId,
    pub source: ModelSource,
    /// Name of the GGUF file (inside the model's folder unless `in_place`).
    pub file_name: String,
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
    /// RFC 3339 UTC time of installation.
    pub installed_at: String,
    /// Registered where it lies (another tool's store) instead of copied in; deleting the
    /// model then removes only Hearth's record, never the file.
    pub in_place: bool,
    /// The file of an in-place model; absent otherwise.
    pub external_path: Option<PathBuf>,
    /// An in-place model's modification time at import (nanoseconds since the Unix epoch),
    /// re-checked with its size before every use; absent for copies and for manifests written
    /// before Hearth recorded it (those are checked by size alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_unix_nanos: Option<u64>,
    /// A split model's parts, the first (`file_name`) first; empty for a single file. Then
    /// `size_bytes` is their sum and `sha256` the first part's digest ([`crate::split`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<crate::split::ModelPart>,
    pub summary: GgufSummary,
}

/// A file's modification time in nanoseconds since the Unix epoch, where the platform tells.
pub fn modified_unix_nanos(metadata: &fs::Metadata) -> Option<u64> {
    let modified = metadata.modified().ok()?;
    let since_epoch = modified.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_nanos()).ok()
}

impl ModelManifest {
    /// The GGUF file, given the model's folder.
    pub fn model_path(&self, model_directory: &Path) -> PathBuf {
        match (&self.external_path, self.in_place) {
            (Some(external_path), true) => external_path.clone(),
            _ => model_directory.join(&self.file_name),
        }
    }

    /// Reads and checks a manifest. The id in the file must match the folder it lies in, and
    /// paths in it must be what Hearth writes: a plain file name, an absolute external path.
    pub fn read(path: &Path, folder_id: &str) -> Result<ModelManifest> {
        let broken = |reason: String| ModelsError::BrokenManifest {
            id: folder_id.to_string(),
            path: path.to_path_buf(),
            reason,
        };
        let size = fs::metadata(path)
            .map_err(|error| ModelsError::io("cannot read", path, error))?
            .len();
        if size > MAX_MANIFEST_BYTES {
            return Err(broken(format!("it is {size} bytes long")));
        }
        let text = fs::read_to_string(path)
            .map_err(|error| ModelsError::io("cannot read", path, error))?;
        let manifest: ModelManifest =
            serde_json::from_str(&text).map_err(|error| broken(error.to_string()))?;
        if manifest.format_version != MANIFEST_FORMAT_VERSION {
            return Err(broken(format!(
                "format version {} is not supported (this build reads {MANIFEST_FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        if manifest.id.as_str() != folder_id {
            return Err(broken(format!(
                "it names model {}, not the folder's {folder_id}",
                manifest.id
            )));
        }
        if !is_plain_file_name(&manifest.file_name) {
            return Err(broken(format!(
                "file name {:?} is not a plain file name",
                manifest.file_name
            )));
        }
        match (&manifest.external_path, manifest.in_place) {
            (Some(external_path), true) if external_path.is_absolute() => {}
            (None, false) => {}
            _ => return Err(broken(
                "in_place and external_path disagree (an in-place model needs an absolute path)"
                    .to_string(),
            )),
        }
        Ok(manifest)
    }

    /// Writes the manifest atomically: a temporary file, fsync, rename, fsync of the folder.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|error| {
            ModelsError::io(
                "cannot serialize manifest for",
                path,
                std::io::Error::other(error),
            )
        })?;
        let temporary_path = with_suffix(path, ".tmp");
        let write_temporary = || -> std::io::Result<()> {
            let mut file = File::create(&temporary_path)?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        };
        write_temporary()
            .map_err(|error| ModelsError::io("cannot write", &temporary_path, error))?;
        fs::rename(&temporary_path, path)
            .map_err(|error| ModelsError::io("cannot move into place", path, error))?;
        if let Some(directory) = path.parent() {
            sync_directory(directory);
        }
        Ok(())
    }
}

/// A single path component that is an ordinary name (no separators, not `.` or `..`).
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', ':'])
        && !name.chars().any(char::is_control)
}

/// The current time as RFC 3339 UTC, such as `2026-11-27T09:30:00Z`.
pub fn now_rfc3339() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    format_rfc3339_utc(seconds)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (proleptic Gregorian calendar).
pub fn format_rfc3339_utc(unix_seconds: u64) -> String {
    const SECONDS_PER_DAY: u64 = 86_400;
    let days = (unix_seconds / SECONDS_PER_DAY) as i64;
    let second_of_day = unix_seconds % SECONDS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(days_since_epoch: i64) -> (i64, u32, u32) {
    const DAYS_PER_ERA: i64 = 146_097;
    let shifted = days_since_epoch + 719_468;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339_utc(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(format_rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn plain_file_names() {
        assert!(is_plain_file_name("model.Q4_K_M.gguf"));
        for bad in ["", ".", "..", "a/b", "..\\x", "C:x", "a\nb"] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }
}
