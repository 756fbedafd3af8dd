//! Split models (`NAME-00001-of-00003.gguf`, `hearth_gguf::split`) in the library: one model
//! whose parts are imported, downloaded, checked and deleted together.
//!
//! The manifest names the first part as the model's file (llama.cpp is given that one and
//! finds the others beside it under their standard names) and lists every part in `parts`
//! with its size, digest and, for in-place models, modification time; its `size_bytes` is the
//! sum. A copied or downloaded model keeps its parts in its folder, so deleting it removes
//! them all; an in-place model's parts stay where they are, beside its first part.

use std::fs;
use std::path::{Path, PathBuf};

use hearth_gguf::split::{split_info, SplitName};
use hearth_gguf::GgufFile;
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error::{ModelsError, Result};
use crate::manifest::{modified_unix_nanos, ModelManifest};

/// One file of a split model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPart {
    pub file_name: String,
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
    /// An in-place part's modification time at import (see the manifest's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_unix_nanos: Option<u64>,
}

/// The split name of `path`'s file, if it has one.
pub fn split_name(path: &Path) -> Option<SplitName> {
    SplitName::parse(&path.file_name()?.to_string_lossy())
}

fn incomplete(path: &Path, reason: String) -> ModelsError {
    ModelsError::IncompleteSplit {
        path: path.to_path_buf(),
        reason,
    }
}

/// Every part of the split model whose first part is `first`, checked: `first` is named as a
/// first part, and each part lies beside it under its standard name, is a GGUF file and says
/// in its header that it is part `i` of the same count. `None` for a file that is not named
/// as a split model's part.
pub fn sibling_parts(first: &Path) -> Result<Option<Vec<PathBuf>>> {
    let Some(name) = split_name(first) else {
        return Ok(None);
    };
    if name.index != 1 {
        return Err(incomplete(
            first,
            format!(
                "it is part {} of {}; import the first part, {}",
                name.index,
                name.count,
                name.part_file_name(1)
            ),
        ));
    }
    let mut parts = Vec::with_capacity(name.count as usize);
    for (number, file_name) in name.part_file_names().into_iter().enumerate() {
        let path = first.with_file_name(&file_name);
        let which = format!("part {} of {} ({file_name})", number + 1, name.count);
        match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => {}
            _ => return Err(incomplete(first, format!("{which} is missing beside it"))),
        }
        let header = GgufFile::open(&path)
            .map_err(|error| incomplete(first, format!("{which} is not a GGUF file: {error}")))?;
        match split_info(&header) {
            Ok(Some(info))
                if info.count == u64::from(name.count) && info.number == number as u64 => {}
            Ok(Some(info)) => {
                return Err(incomplete(
                    first,
                    format!(
                        "{which} says it is part {} of {}",
                        info.number + 1,
                        info.count
                    ),
                ))
            }
            Ok(None) | Err(_) => {
                return Err(incomplete(
                    first,
                    format!("{which} has no split keys (split.no, split.count)"),
                ))
            }
        }
        parts.push(path);
    }
    Ok(Some(parts))
}

/// Where part `file_name` of the model in `model_directory` lies: beside its first part.
pub fn part_path(manifest: &ModelManifest, model_directory: &Path, file_name: &str) -> PathBuf {
    manifest
        .model_path(model_directory)
        .with_file_name(file_name)
}

/// Checks the parts after the first of a split model (the first is checked with the model):
/// each is there with its recorded size, and an in-place one with its modification time.
pub fn check_other_parts(
    manifest: &ModelManifest,
    model_directory: &Path,
    changed: impl Fn(String) -> ModelsError,
    broken: impl Fn(String) -> ModelsError,
) -> Result<()> {
    for part in manifest.parts.iter().skip(1) {
        let path = part_path(manifest, model_directory, &part.file_name);
        let metadata = match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => metadata,
            _ => return Err(broken(format!("its part {} is missing", path.display()))),
        };
        let detail = if metadata.len() != part.size_bytes {
            Some(format!(
                "part {} is {} bytes, it was {}",
                part.file_name,
                metadata.len(),
                part.size_bytes
            ))
        } else if manifest.in_place
            && part.modified_unix_nanos.is_some()
            && modified_unix_nanos(&metadata) != part.modified_unix_nanos
        {
            Some(format!(
                "part {}'s modification time differs",
                part.file_name
            ))
        } else {
            None
        };
        if let Some(detail) = detail {
            return Err(if manifest.in_place {
                changed(detail)
            } else {
                broken(detail)
            });
        }
    }
    Ok(())
}

/// A part's record from its file (and its digest, computed by the caller).
pub fn part_record(path: &Path, sha256: Sha256Digest, in_place: bool) -> Result<ModelPart> {
    let metadata =
        fs::metadata(path).map_err(|error| ModelsError::io("cannot read", path, error))?;
    Ok(ModelPart {
        file_name: path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size_bytes: metadata.len(),
        sha256,
        modified_unix_nanos: if in_place {
            modified_unix_nanos(&metadata)
        } else {
            None
        },
    })
}

/// The sum of the parts' sizes.
pub fn total_size(parts: &[ModelPart]) -> u64 {
    parts
        .iter()
        .fold(0u64, |total, part| total.saturating_add(part.size_bytes))
}

impl crate::library::ModelLibrary {
    /// Downloads one later part of a split model into `directory` (its digest and size from
    /// the hub, as for the first): the part's record, or how the pull stopped.
    pub(crate) fn download_part(
        &self,
        hub: &crate::hub::HubClient,
        request: &crate::library::PullRequest,
        file: &str,
        directory: &Path,
        control: &crate::download::DownloadControl,
        progress: &dyn crate::download::DownloadProgress,
    ) -> Result<std::result::Result<ModelPart, crate::library::PullOutcome>> {
        use crate::download::DownloadRequest;
        let (expected_sha256, expected_size_bytes) =
            match hub.remote_file_info(&request.repo, &request.revision, file) {
                Ok(remote) => (remote.sha256, remote.size_bytes),
                Err(
                    error @ ModelsError::HttpStatus {
                        status: 401 | 403 | 404,
                        ..
                    },
                ) => return Err(error),
                Err(_) => (None, None),
            };
        let file_name = file.rsplit('/').next().unwrap_or(file);
        let download = DownloadRequest {
            url: hub.resolve_url(&request.repo, &request.revision, file),
            destination: directory.join(file_name),
            expected_sha256,
            expected_size_bytes,
        };
        Ok(
            match crate::fetch::fetch(hub, &download, control, progress)? {
                Ok(completed) => Ok(part_record(&completed.path, completed.sha256, false)?),
                Err(stopped) => Err(stopped),
            },
        )
    }

    /// Records (in place) or copies into `directory` the parts after the first of a split
    /// model (`paths`, from [`sibling_parts`]); `first` is the first part's record.
    pub(crate) fn import_other_parts(
        &self,
        paths: &[PathBuf],
        first: ModelPart,
        in_place: bool,
        directory: &Path,
        progress: &dyn crate::download::DownloadProgress,
    ) -> Result<Vec<ModelPart>> {
        let mut parts = vec![first];
        for path in paths.iter().skip(1) {
            if in_place {
                let size = fs::metadata(path)
                    .map_err(|error| ModelsError::io("cannot read", path, error))?
                    .len();
                let sha256 = crate::fetch::hash_with_progress(path, size, progress)?;
                parts.push(part_record(path, sha256, true)?);
            } else {
                let destination = directory.join(path.file_name().unwrap_or_default());
                let (sha256, _) = crate::fetch::copy_verified(path, &destination, progress)?;
                parts.push(part_record(&destination, sha256, false)?);
            }
        }
        Ok(parts)
    }
}
