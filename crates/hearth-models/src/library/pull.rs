//! Pulling a model from the hub into the library: one writer per model (the install lock),
//! a resumable verified download, sizes and digests from every source checked against each
//! other, the GGUF header read, then the manifest written.

use std::fs;
use std::path::Path;

use super::{
    describe_source, is_usable_model_file_name, InstalledModel, ModelLibrary, PullOutcome,
    PullRequest, INSTALL_LOCK_FILE_NAME,
};
use crate::digest::Sha256Digest;
use crate::download::{
    lock_exclusive, ControlRequest, DownloadControl, DownloadProgress, DownloadRequest, LockAttempt,
};
use crate::error::{ModelsError, Result};
use crate::fetch::fetch;
use crate::gguf_summary::summarize_gguf;
use crate::hub::HubClient;
use crate::manifest::{
    now_rfc3339, ModelManifest, ModelSource, MANIFEST_FILE_NAME, MANIFEST_FORMAT_VERSION,
};
use crate::split;

impl ModelLibrary {
    /// Downloads a model from the hub and installs it: resumes a partial download, verifies
    /// size and SHA-256 (from the request, else from the hub), reads the GGUF header, then
    /// writes the manifest. A concurrent pull of the same model waits for this one and returns
    /// [`PullOutcome::AlreadyInstalled`].
    pub fn pull(
        &self,
        hub: &HubClient,
        request: &PullRequest,
        control: &DownloadControl,
        progress: &dyn DownloadProgress,
    ) -> Result<PullOutcome> {
        let file_name = request.file_name().to_string();
        if !file_name.to_ascii_lowercase().ends_with(".gguf") {
            return Err(ModelsError::InvalidFileName {
                name: request.file.clone(),
                reason: "only .gguf files can be pulled",
            });
        }
        if !is_usable_model_file_name(&file_name) {
            return Err(ModelsError::InvalidFileName {
                name: request.file.clone(),
                reason: "not usable as a file name",
            });
        }
        let directory = self.model_directory(&request.model_id);
        fs::create_dir_all(&directory)
            .map_err(|error| ModelsError::io("cannot create folder", &directory, error))?;
        let _lock =
            match lock_exclusive(&directory.join(INSTALL_LOCK_FILE_NAME), control, progress)? {
                LockAttempt::Acquired(lock) => lock,
                LockAttempt::Stopped(ControlRequest::Cancel) => return Ok(PullOutcome::Cancelled),
                LockAttempt::Stopped(ControlRequest::Pause) => {
                    return Ok(PullOutcome::Paused {
                        bytes_done: 0,
                        total_bytes: request.expected_size_bytes,
                    })
                }
            };

        let manifest_path = directory.join(MANIFEST_FILE_NAME);
        if manifest_path.exists() {
            let installed = match self.load_installed(&directory, request.model_id.as_str()) {
                Ok(installed) => installed,
                // A broken install (its file deleted or damaged, its manifest corrupt) is
                // repaired by pulling again: forget it, then download as if it were not there.
                Err(ModelsError::BrokenManifest { .. } | ModelsError::ModelFileChanged { .. }) => {
                    fs::remove_file(&manifest_path)
                        .map_err(|error| ModelsError::io("cannot remove", &manifest_path, error))?;
                    return self.download_and_install(hub, request, &directory, control, progress);
                }
                Err(error) => return Err(error),
            };
            let same_file = installed.manifest.file_name == file_name
                && !installed.manifest.in_place
                && request
                    .expected_sha256
                    .is_none_or(|expected| expected == installed.manifest.sha256);
            if same_file {
                return Ok(PullOutcome::AlreadyInstalled(installed));
            }
            return Err(ModelsError::ModelIdTaken {
                id: request.model_id.to_string(),
                existing: describe_source(&installed.manifest),
            });
        }

        self.download_and_install(hub, request, &directory, control, progress)
    }

    /// The part of `pull` after the lock is held and no valid install was found.
    fn download_and_install(
        &self,
        hub: &HubClient,
        request: &PullRequest,
        directory: &Path,
        control: &DownloadControl,
        progress: &dyn DownloadProgress,
    ) -> Result<PullOutcome> {
        let file_name = request.file_name().to_string();
        let url = hub.resolve_url(&request.repo, &request.revision, &request.file);
        let source = |commit: Option<String>| match &request.catalog_entry {
            Some((catalog_id, quantization)) => ModelSource::Catalog {
                catalog_id: catalog_id.clone(),
                quantization: quantization.clone(),
                repo: request.repo.to_string(),
                revision: request.revision.clone(),
                file: request.file.clone(),
                url: url.clone(),
                commit,
            },
            None => ModelSource::Hub {
                repo: request.repo.to_string(),
                revision: request.revision.clone(),
                file: request.file.clone(),
                url: url.clone(),
                commit,
            },
        };

        // What the hub says about the file fills the gaps in what the request knows, and must
        // agree with what it knows.
        let mut expected_sha256 = request.expected_sha256;
        let mut expected_size_bytes = request.expected_size_bytes;
        let mut commit = None;
        if expected_sha256.is_none() || expected_size_bytes.is_none() {
            match hub.remote_file_info(&request.repo, &request.revision, &request.file) {
                Ok(remote) => {
                    check_agreement(
                        &url,
                        expected_size_bytes,
                        remote.size_bytes,
                        expected_sha256,
                        remote.sha256,
                    )?;
                    expected_sha256 = expected_sha256.or(remote.sha256);
                    expected_size_bytes = expected_size_bytes.or(remote.size_bytes);
                    commit = remote.commit;
                }
                // A missing or gated file will not download either: say so now.
                Err(
                    error @ ModelsError::HttpStatus {
                        status: 401 | 403 | 404,
                        ..
                    },
                ) => return Err(error),
                // Anything else (a mirror without HEAD support, a hiccup) is left to the
                // download, which has its own retries and checks.
                Err(_) => {}
            }
        }

        let destination = directory.join(&file_name);
        let download = DownloadRequest {
            url: url.clone(),
            destination: destination.clone(),
            expected_sha256,
            expected_size_bytes,
        };
        let completed = match fetch(hub, &download, control, progress)? {
            Ok(completed) => completed,
            Err(stopped) => return Ok(stopped),
        };

        let summary = match summarize_gguf(&completed.path) {
            Ok(summary) => summary,
            Err(error) => {
                let _ = fs::remove_file(&completed.path);
                return Err(error);
            }
        };
        // A split model's first part: the others follow, then are checked together.
        let parts = match split::split_name(&completed.path) {
            Some(name) if name.index == 1 => {
                let mut parts = vec![split::part_record(
                    &completed.path,
                    completed.sha256,
                    false,
                )?];
                for file_name in name.part_file_names().into_iter().skip(1) {
                    let file = match request.file.rsplit_once('/') {
                        Some((folder, _)) => format!("{folder}/{file_name}"),
                        None => file_name.clone(),
                    };
                    let part =
                        self.download_part(hub, request, &file, directory, control, progress)?;
                    match part {
                        Ok(part) => parts.push(part),
                        Err(stopped) => return Ok(stopped),
                    }
                }
                split::sibling_parts(&completed.path)?;
                parts
            }
            _ => Vec::new(),
        };
        let size_bytes = if parts.is_empty() {
            completed.size_bytes
        } else {
            split::total_size(&parts)
        };
        let manifest = ModelManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: request.model_id.clone(),
            source: source(commit),
            file_name,
            size_bytes,
            sha256: completed.sha256,
            installed_at: now_rfc3339(),
            in_place: false,
            external_path: None,
            modified_unix_nanos: None,
            parts,
            summary,
        };
        manifest.write(&directory.join(MANIFEST_FILE_NAME))?;
        Ok(PullOutcome::Installed(InstalledModel {
            manifest,
            model_path: destination,
        }))
    }
}

/// Fails when two sources of a file's size or digest disagree.
fn check_agreement(
    url: &str,
    expected_size_bytes: Option<u64>,
    remote_size_bytes: Option<u64>,
    expected_sha256: Option<Sha256Digest>,
    remote_sha256: Option<Sha256Digest>,
) -> Result<()> {
    if let (Some(expected), Some(actual)) = (expected_size_bytes, remote_size_bytes) {
        if expected != actual {
            return Err(ModelsError::SizeMismatch {
                subject: format!("{url} (the hub's size vs. the catalog's)"),
                expected,
                actual,
            });
        }
    }
    if let (Some(expected), Some(actual)) = (expected_sha256, remote_sha256) {
        if expected != actual {
            return Err(ModelsError::DigestMismatch {
                subject: format!("{url} (the hub's digest vs. the catalog's)"),
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
    }
    Ok(())
}
