//! The local model library: `<models dir>/<id>/` holds one model's GGUF file (unless it was
//! registered in place), its `manifest.json`, and while a pull runs, `<file>.partial` and the
//! `install.lock` that makes one process at a time the writer of that model.
//!
//! Only folders with a valid manifest count as installed models. A partial download, a folder
//! without a manifest or with a corrupt one is never listed as installed and never loaded;
//! corrupt ones are reported as broken so the user can remove them, and everything else is
//! still listed.

use std::fs;
use std::path::{Path, PathBuf};

use crate::catalog::Catalog;
use crate::digest::Sha256Digest;
use crate::discover::DiscoveredModel;
use crate::download::{
    lock_blocking, lock_exclusive, sync_directory, ControlRequest, DownloadControl,
    DownloadProgress, DownloadRequest, LockAttempt, LOCK_SUFFIX, PARTIAL_SUFFIX,
};
use crate::error::{ModelsError, Result};
use crate::fetch::{copy_verified, fetch, hash_with_progress};
use crate::gguf_summary::summarize_gguf;
use crate::hub::{validate_repo_file_path, validate_revision, HubClient, HubRepo};
use crate::id::ModelId;
use crate::manifest::{
    is_plain_file_name, now_rfc3339, ImportOrigin, ModelManifest, ModelSource, MANIFEST_FILE_NAME,
    MANIFEST_FORMAT_VERSION,
};
use crate::split;

/// The lock file inside a model's folder: whoever holds it is the only writer of that model.
pub const INSTALL_LOCK_FILE_NAME: &str = "install.lock";

/// The models directory and everything done to it.
#[derive(Debug, Clone)]
pub struct ModelLibrary {
    models_directory: PathBuf,
}

/// An installed model and where its file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModel {
    pub manifest: ModelManifest,
    /// The GGUF file to load.
    pub model_path: PathBuf,
}

/// A folder that looks like a model but cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenModel {
    /// The folder's name.
    pub id: String,
    pub directory: PathBuf,
    pub reason: String,
}

/// What `list` finds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryListing {
    /// Sorted by id.
    pub installed: Vec<InstalledModel>,
    pub broken: Vec<BrokenModel>,
}

/// A download that stopped before completion and can be resumed by pulling again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialDownload {
    pub id: String,
    pub partial_path: PathBuf,
    pub bytes_done: u64,
}

/// A model to download from the hub.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// The id to install under.
    pub model_id: ModelId,
    pub repo: HubRepo,
    pub revision: String,
    /// Path of the GGUF file in the repository.
    pub file: String,
    /// Checked against what arrives; looked up on the hub when absent.
    pub expected_sha256: Option<Sha256Digest>,
    pub expected_size_bytes: Option<u64>,
    /// The catalog entry and quantization this pull is for, if any.
    pub catalog_entry: Option<(String, String)>,
}

impl PullRequest {
    /// The pull of a catalog model at `quantization` (its default when `None`). The default
    /// quantization installs under the catalog id (`qwen3-4b`), any other under the id with
    /// the quantization appended (`qwen3-4b-q8_0`), so both can be installed side by side.
    pub fn from_catalog(
        catalog: &Catalog,
        catalog_id: &str,
        quantization: Option<&str>,
    ) -> Result<PullRequest> {
        let model = catalog.get(catalog_id)?;
        let file = model.file_for(quantization)?;
        let is_default_quantization = file
            .quantization
            .eq_ignore_ascii_case(&model.default_quantization);
        let model_id = if is_default_quantization {
            ModelId::new(model.id.as_str())?
        } else {
            ModelId::new(format!(
                "{}-{}",
                model.id,
                file.quantization.to_ascii_lowercase()
            ))?
        };
        Ok(PullRequest {
            model_id,
            repo: model.hub_repo()?,
            revision: model.revision().to_string(),
            file: file.file.clone(),
            expected_sha256: file.sha256_digest(),
            expected_size_bytes: file.size_bytes,
            catalog_entry: Some((model.id.clone(), file.quantization.clone())),
        })
    }

    /// The pull of any GGUF file in a hub repository; the id defaults to one made from the
    /// file name.
    pub fn from_hub(
        repo: HubRepo,
        revision: Option<&str>,
        file: &str,
        model_id: Option<ModelId>,
    ) -> Result<PullRequest> {
        let revision = revision.unwrap_or(crate::catalog::DEFAULT_REVISION);
        validate_revision(revision).map_err(|reason| ModelsError::InvalidFileName {
            name: revision.to_string(),
            reason,
        })?;
        validate_repo_file_path(file).map_err(|reason| ModelsError::InvalidFileName {
            name: file.to_string(),
            reason,
        })?;
        let file_name = file.rsplit('/').next().unwrap_or(file);
        Ok(PullRequest {
            model_id: model_id.unwrap_or_else(|| ModelId::suggest_from(file_name)),
            repo,
            revision: revision.to_string(),
            file: file.to_string(),
            expected_sha256: None,
            expected_size_bytes: None,
            catalog_entry: None,
        })
    }

    /// The file name the model gets on disk.
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }
}

/// How a pull ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    Installed(InstalledModel),
    /// The model was already installed (perhaps by a concurrent pull that just finished).
    AlreadyInstalled(InstalledModel),
    /// Paused; pulling again resumes from `bytes_done`.
    Paused {
        bytes_done: u64,
        total_bytes: Option<u64>,
    },
    /// Cancelled; the partial file is gone.
    Cancelled,
}

/// How to import a local file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Copy the file into the models directory.
    Copy,
    /// Register the file where it lies, without copying a byte.
    InPlace,
}

/// A local GGUF file to add to the library.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub source_path: PathBuf,
    /// Defaults to an id made from the file name.
    pub model_id: Option<ModelId>,
    pub mode: ImportMode,
    pub origin: ImportOrigin,
    /// A digest the source's store already vouches for (content-addressed blob names), which
    /// spares hashing a large file again for an in-place import.
    pub known_sha256: Option<Sha256Digest>,
}

impl ImportRequest {
    /// Import of a file the user names.
    pub fn file(source_path: impl Into<PathBuf>, mode: ImportMode) -> ImportRequest {
        ImportRequest {
            source_path: source_path.into(),
            model_id: None,
            mode,
            origin: ImportOrigin::File,
            known_sha256: None,
        }
    }

    /// In-place import of a model found in another tool's store.
    pub fn discovered(model: &DiscoveredModel) -> ImportRequest {
        ImportRequest {
            source_path: model.path.clone(),
            model_id: Some(model.suggested_id.clone()),
            mode: ImportMode::InPlace,
            origin: model.origin.clone(),
            known_sha256: model.sha256,
        }
    }
}

impl ModelLibrary {
    /// A library rooted at `models_directory` (typically `<HEARTH_HOME>/models`). Nothing is
    /// created until something is installed.
    pub fn new(models_directory: impl Into<PathBuf>) -> ModelLibrary {
        ModelLibrary {
            models_directory: models_directory.into(),
        }
    }

    pub fn models_directory(&self) -> &Path {
        &self.models_directory
    }

    /// The folder of a model.
    pub fn model_directory(&self, id: &ModelId) -> PathBuf {
        // A validated id is a single ordinary path component, so this stays inside.
        self.models_directory.join(id.as_str())
    }

    /// Every installed model, and every broken one. A missing models directory is an empty
    /// library.
    pub fn list(&self) -> Result<LibraryListing> {
        let mut listing = LibraryListing::default();
        let entries = match fs::read_dir(&self.models_directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
            Err(error) => {
                return Err(ModelsError::io(
                    "cannot list",
                    &self.models_directory,
                    error,
                ))
            }
        };
        for entry in entries.flatten() {
            let directory = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !directory.is_dir() {
                continue;
            }
            if !directory.join(MANIFEST_FILE_NAME).exists() {
                // A download in progress or interrupted: not a model (yet).
                continue;
            }
            match self.load_installed(&directory, &name) {
                Ok(installed) => listing.installed.push(installed),
                Err(error) => listing.broken.push(BrokenModel {
                    id: name,
                    directory,
                    reason: error.to_string(),
                }),
            }
        }
        listing
            .installed
            .sort_by(|left, right| left.manifest.id.cmp(&right.manifest.id));
        listing.broken.sort_by(|left, right| left.id.cmp(&right.id));
        Ok(listing)
    }

    /// One installed model, checked as `list` checks it.
    pub fn get(&self, id: &ModelId) -> Result<InstalledModel> {
        let directory = self.model_directory(id);
        if !directory.join(MANIFEST_FILE_NAME).exists() {
            return Err(ModelsError::ModelNotInstalled { id: id.to_string() });
        }
        self.load_installed(&directory, id.as_str())
    }

    /// Reads a manifest and checks that its file is there with the recorded size.
    fn load_installed(&self, directory: &Path, folder_name: &str) -> Result<InstalledModel> {
        let manifest_path = directory.join(MANIFEST_FILE_NAME);
        let manifest = ModelManifest::read(&manifest_path, folder_name)?;
        let model_path = manifest.model_path(directory);
        let broken = |reason: String| ModelsError::BrokenManifest {
            id: folder_name.to_string(),
            path: manifest_path.clone(),
            reason,
        };
        let changed = |detail: String| ModelsError::ModelFileChanged {
            id: folder_name.to_string(),
            path: model_path.clone(),
            detail,
        };
        let metadata = match fs::metadata(&model_path) {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => return Err(broken(format!("{} is not a file", model_path.display()))),
            Err(error) => {
                return Err(broken(format!(
                    "its file {} is missing: {error}",
                    model_path.display()
                )))
            }
        };
        // A split model's first part has its own size; the manifest's is the sum.
        let expected_size = manifest
            .parts
            .first()
            .map_or(manifest.size_bytes, |first| first.size_bytes);
        if metadata.len() != expected_size {
            let detail = format!("it is {} bytes, it was {expected_size}", metadata.len());
            return Err(if manifest.in_place {
                changed(detail)
            } else {
                broken(format!(
                    "{} {detail} (changed since install?)",
                    model_path.display()
                ))
            });
        }
        // In-place files belong to another tool, which may rewrite one in place with the same
        // size; the modification time tells. Older manifests without it pass on size alone.
        if let (true, Some(recorded)) = (manifest.in_place, manifest.modified_unix_nanos) {
            if crate::manifest::modified_unix_nanos(&metadata) != Some(recorded) {
                return Err(changed("its modification time differs".to_string()));
            }
        }
        split::check_other_parts(&manifest, directory, changed, broken)?;
        Ok(InstalledModel {
            manifest,
            model_path,
        })
    }

    /// Downloads that stopped before completion (paused, failed or killed). They are not
    /// models; pulling the same model again resumes them.
    pub fn partial_downloads(&self) -> Result<Vec<PartialDownload>> {
        let mut partials = Vec::new();
        let entries = match fs::read_dir(&self.models_directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(partials),
            Err(error) => {
                return Err(ModelsError::io(
                    "cannot list",
                    &self.models_directory,
                    error,
                ))
            }
        };
        for entry in entries.flatten() {
            let Ok(files) = fs::read_dir(entry.path()) else {
                continue;
            };
            for file in files.flatten() {
                let file_name = file.file_name().to_string_lossy().into_owned();
                if file_name.ends_with(PARTIAL_SUFFIX) {
                    partials.push(PartialDownload {
                        id: entry.file_name().to_string_lossy().into_owned(),
                        partial_path: file.path(),
                        bytes_done: file.metadata().map_or(0, |metadata| metadata.len()),
                    });
                }
            }
        }
        partials.sort_by(|left, right| left.partial_path.cmp(&right.partial_path));
        Ok(partials)
    }

    /// Removes a model: its manifest first (so it stops counting as installed at once), then
    /// its folder. For an in-place model the external file is left alone. Also removes a
    /// broken model's folder.
    pub fn delete(&self, id: &ModelId) -> Result<()> {
        let directory = self.model_directory(id);
        let manifest_path = directory.join(MANIFEST_FILE_NAME);
        if !directory.is_dir() {
            return Err(ModelsError::ModelNotInstalled { id: id.to_string() });
        }
        // Wait for a pull of this model to finish rather than pull the floor from under it.
        let lock = lock_blocking(&directory.join(INSTALL_LOCK_FILE_NAME))?;
        match fs::remove_file(&manifest_path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(ModelsError::io("cannot remove", &manifest_path, error)),
        }
        let entries = fs::read_dir(&directory)
            .map_err(|error| ModelsError::io("cannot list", &directory, error))?;
        for entry in entries.flatten() {
            if entry.file_name() == INSTALL_LOCK_FILE_NAME {
                continue;
            }
            let path = entry.path();
            // `file_type` does not follow symbolic links, and neither does `remove_dir_all`,
            // so nothing outside the folder can be deleted from here.
            let is_directory = entry.file_type().is_ok_and(|file_type| file_type.is_dir());
            let removed = if is_directory {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(|error| ModelsError::io("cannot remove", &path, error))?;
        }
        // The lock goes last and only after it is released: Windows cannot delete an open file.
        drop(lock);
        let _ = fs::remove_file(directory.join(INSTALL_LOCK_FILE_NAME));
        let _ = fs::remove_dir(&directory);
        sync_directory(&self.models_directory);
        Ok(())
    }

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

    /// Adds a local GGUF file to the library, copied or registered in place. The file's
    /// header is read first, so a file that is not a GGUF model is refused.
    pub fn import(
        &self,
        request: &ImportRequest,
        progress: &dyn DownloadProgress,
    ) -> Result<InstalledModel> {
        let source_path = &request.source_path;
        let metadata = fs::metadata(source_path)
            .map_err(|error| ModelsError::io("cannot read", source_path, error))?;
        if !metadata.is_file() {
            return Err(ModelsError::NotAFile {
                path: source_path.clone(),
            });
        }
        let summary = summarize_gguf(source_path)?;
        let file_name = source_path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| is_usable_model_file_name(name))
            .unwrap_or_else(|| "model.gguf".to_string());
        let model_id = match &request.model_id {
            Some(id) => id.clone(),
            None => ModelId::suggest_from(&file_name),
        };
        let directory = self.model_directory(&model_id);
        fs::create_dir_all(&directory)
            .map_err(|error| ModelsError::io("cannot create folder", &directory, error))?;
        let _lock = lock_blocking(&directory.join(INSTALL_LOCK_FILE_NAME))?;
        if directory.join(MANIFEST_FILE_NAME).exists() {
            let existing = self
                .load_installed(&directory, model_id.as_str())
                .map(|installed| describe_source(&installed.manifest))
                .unwrap_or_else(|error| error.to_string());
            return Err(ModelsError::ModelIdTaken {
                id: model_id.to_string(),
                existing,
            });
        }

        // A split model's first part brings its other parts (checked before anything is
        // copied or recorded).
        let split_parts = split::sibling_parts(source_path)?;
        let (sha256, size_bytes, external_path, in_place) = match request.mode {
            ImportMode::InPlace => {
                let absolute = fs::canonicalize(source_path)
                    .map_err(|error| ModelsError::io("cannot resolve", source_path, error))?;
                // Keep the path the user or the store uses (a Hugging Face snapshot link, say)
                // when it is absolute; the store may re-point it, and we follow.
                let external_path = if source_path.is_absolute() {
                    source_path.clone()
                } else {
                    absolute
                };
                let sha256 = match request.known_sha256 {
                    Some(known) => known,
                    None => hash_with_progress(source_path, metadata.len(), progress)?,
                };
                (sha256, metadata.len(), Some(external_path), true)
            }
            ImportMode::Copy => {
                let destination = directory.join(&file_name);
                let (sha256, size_bytes) = copy_verified(source_path, &destination, progress)?;
                if let Some(known) = request.known_sha256 {
                    if known != sha256 {
                        let _ = fs::remove_file(&destination);
                        return Err(ModelsError::DigestMismatch {
                            subject: source_path.display().to_string(),
                            expected: known.to_hex(),
                            actual: sha256.to_hex(),
                        });
                    }
                }
                (sha256, size_bytes, None, false)
            }
        };
        let mut manifest = ModelManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: model_id,
            source: ModelSource::Import {
                original_path: source_path.clone(),
                origin: request.origin.clone(),
            },
            file_name,
            size_bytes,
            sha256,
            installed_at: now_rfc3339(),
            in_place,
            external_path,
            modified_unix_nanos: if in_place {
                crate::manifest::modified_unix_nanos(&metadata)
            } else {
                None
            },
            parts: Vec::new(),
            summary,
        };
        if let Some(paths) = split_parts {
            let first = split::part_record(source_path, sha256, in_place)?;
            manifest.parts =
                self.import_other_parts(&paths, first, in_place, &directory, progress)?;
            manifest.size_bytes = split::total_size(&manifest.parts);
        }
        manifest.write(&directory.join(MANIFEST_FILE_NAME))?;
        let model_path = manifest.model_path(&directory);
        Ok(InstalledModel {
            manifest,
            model_path,
        })
    }
}

/// A plain file name that cannot collide with the library's own files in a model's folder.
fn is_usable_model_file_name(name: &str) -> bool {
    let lowercase = name.to_ascii_lowercase();
    is_plain_file_name(name)
        && lowercase != MANIFEST_FILE_NAME
        && lowercase != INSTALL_LOCK_FILE_NAME
        && ![PARTIAL_SUFFIX, LOCK_SUFFIX, ".tmp"]
            .iter()
            .any(|suffix| lowercase.ends_with(suffix))
}

/// One line on where an installed model came from, for "id already taken" errors.
fn describe_source(manifest: &ModelManifest) -> String {
    match &manifest.source {
        ModelSource::Catalog {
            catalog_id,
            quantization,
            ..
        } => format!("catalog model {catalog_id} {quantization}"),
        ModelSource::Hub { repo, file, .. } => format!("{repo}/{file}"),
        ModelSource::Import { original_path, .. } => {
            format!("imported from {}", original_path.display())
        }
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
