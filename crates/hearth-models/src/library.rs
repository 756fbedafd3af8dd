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
use crate::download::{lock_blocking, sync_directory, LOCK_SUFFIX, PARTIAL_SUFFIX};
use crate::error::{ModelsError, Result};
use crate::hub::{validate_repo_file_path, validate_revision, HubRepo};
use crate::id::ModelId;
use crate::manifest::{
    is_plain_file_name, ImportOrigin, ModelManifest, ModelSource, MANIFEST_FILE_NAME,
};
use crate::split;

mod import;
mod pull;

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
