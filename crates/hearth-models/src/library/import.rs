//! Importing a local GGUF file into the library: copied (hashed as it goes) or registered in
//! place, its header read first so a file that is not a model is refused.

use std::fs;

use super::{
    describe_source, is_usable_model_file_name, ImportMode, ImportRequest, InstalledModel,
    ModelLibrary, INSTALL_LOCK_FILE_NAME,
};
use crate::download::{lock_blocking, DownloadProgress};
use crate::error::{ModelsError, Result};
use crate::fetch::{copy_verified, hash_with_progress};
use crate::gguf_summary::summarize_gguf;
use crate::id::ModelId;
use crate::manifest::{
    now_rfc3339, ModelManifest, ModelSource, MANIFEST_FILE_NAME, MANIFEST_FORMAT_VERSION,
};
use crate::split;

impl ModelLibrary {
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
