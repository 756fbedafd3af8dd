//! Finds GGUF models that other tools already downloaded, so Hearth can register them in
//! place instead of downloading or copying gigabytes again.
//!
//! - Ollama: JSON manifests under `models/manifests/<registry>/<namespace>/<model>/<tag>`
//!   whose layer of media type `application/vnd.ollama.image.model` points at
//!   `models/blobs/sha256-<hex>`, which is a GGUF file.
//! - LM Studio: `<models>/<publisher>/<repository>/*.gguf`.
//! - Hugging Face cache: `hub/models--<owner>--<name>/snapshots/<revision>/**/*.gguf`, symbolic
//!   links into `blobs/<sha256>`.
//!
//! Roots are parameters (the CLI knows the home directory and environment variables); a root
//! that does not exist is simply empty. Walks are bounded, unreadable entries are skipped and
//! reported, and only files that start with the GGUF magic are offered.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::{is_sha256_hex, Sha256Digest};
use crate::gguf_summary::GGUF_MAGIC;
use crate::id::ModelId;
use crate::manifest::ImportOrigin;

/// Ollama's media type for the model weights layer.
pub const OLLAMA_MODEL_MEDIA_TYPE: &str = "application/vnd.ollama.image.model";
/// Ollama's public registry; its models are shown as `name:tag` without the host.
const OLLAMA_DEFAULT_REGISTRY: &str = "registry.ollama.ai";
/// Ollama manifests are small JSON files; larger files under `manifests` are not manifests.
const MAX_OLLAMA_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Depth bound for walking a snapshot or a publisher folder (real layouts use 1 to 3 levels).
const MAX_WALK_DEPTH: usize = 6;
/// Bound on files looked at per root, so a mistaken root such as `/` cannot take forever.
const MAX_FILES_PER_ROOT: usize = 100_000;

/// Where to look. Build it with [`DiscoveryRoots::under_home`] or fill it yourself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryRoots {
    /// Ollama's models folders (each holding `manifests/` and `blobs/`).
    pub ollama_models: Vec<PathBuf>,
    /// LM Studio's models folders.
    pub lm_studio_models: Vec<PathBuf>,
    /// Hugging Face hub caches (each holding `models--*` folders).
    pub huggingface_hub: Vec<PathBuf>,
}

impl DiscoveryRoots {
    /// The default locations of the three tools under a home directory. Environment overrides
    /// (`OLLAMA_MODELS`, `HF_HUB_CACHE`, `HF_HOME`) are the caller's to apply.
    pub fn under_home(home: &Path) -> DiscoveryRoots {
        DiscoveryRoots {
            ollama_models: vec![home.join(".ollama").join("models")],
            lm_studio_models: vec![
                home.join(".lmstudio").join("models"),
                home.join(".cache").join("lm-studio").join("models"),
            ],
            huggingface_hub: vec![home.join(".cache").join("huggingface").join("hub")],
        }
    }
}

/// A GGUF model found in another tool's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredModel {
    pub origin: ImportOrigin,
    /// The name the tool shows (`llama3.2:1b`, `publisher/repo/file.gguf`, `owner/name/file`).
    pub display_name: String,
    /// The path to register: the blob for Ollama, the file for LM Studio, the snapshot link
    /// for the Hugging Face cache.
    pub path: PathBuf,
    pub size_bytes: u64,
    /// When the store names files by their SHA-256 (Ollama blobs, Hugging Face LFS blobs).
    pub sha256: Option<Sha256Digest>,
    pub suggested_id: ModelId,
}

/// What a discovery found, and what it could not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryReport {
    pub models: Vec<DiscoveredModel>,
    /// One line per entry that looked like a model but could not be used.
    pub problems: Vec<String>,
}

/// Looks through every root. Each file appears once, even if several names point at it.
pub fn discover_external_models(roots: &DiscoveryRoots) -> DiscoveryReport {
    let mut report = DiscoveryReport::default();
    for root in &roots.ollama_models {
        discover_ollama(root, &mut report);
    }
    for root in &roots.lm_studio_models {
        discover_lm_studio(root, &mut report);
    }
    for root in &roots.huggingface_hub {
        discover_huggingface_cache(root, &mut report);
    }
    let mut seen_files = HashSet::new();
    report.models.retain(|model| {
        let identity = fs::canonicalize(&model.path).unwrap_or_else(|_| model.path.clone());
        seen_files.insert(identity)
    });
    report
}

#[derive(Debug, Deserialize)]
struct OllamaManifest {
    #[serde(default)]
    layers: Vec<OllamaLayer>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OllamaLayer {
    media_type: String,
    digest: String,
}

fn discover_ollama(models_root: &Path, report: &mut DiscoveryReport) {
    let manifests_root = models_root.join("manifests");
    let blobs_root = models_root.join("blobs");
    let mut manifest_paths = Vec::new();
    collect_files(
        &manifests_root,
        MAX_WALK_DEPTH,
        &mut manifest_paths,
        &|_| true,
    );
    for manifest_path in manifest_paths {
        let Ok(relative) = manifest_path.strip_prefix(&manifests_root) else {
            continue;
        };
        let parts: Vec<String> = relative
            .components()
            .map(|component| component.as_os_str().to_string_lossy().into_owned())
            .collect();
        // <registry>/<namespace>/<model>/<tag>; anything else is not a manifest.
        let [registry, namespace, model, tag] = parts.as_slice() else {
            continue;
        };
        let model_name = if registry == OLLAMA_DEFAULT_REGISTRY && namespace == "library" {
            format!("{model}:{tag}")
        } else if registry == OLLAMA_DEFAULT_REGISTRY {
            format!("{namespace}/{model}:{tag}")
        } else {
            format!("{registry}/{namespace}/{model}:{tag}")
        };
        let manifest = match read_small_json::<OllamaManifest>(&manifest_path) {
            Ok(manifest) => manifest,
            Err(reason) => {
                report
                    .problems
                    .push(format!("Ollama model {model_name}: {reason}"));
                continue;
            }
        };
        let Some(layer) = manifest
            .layers
            .iter()
            .find(|layer| layer.media_type == OLLAMA_MODEL_MEDIA_TYPE)
        else {
            continue;
        };
        let Some(hex) = layer
            .digest
            .strip_prefix("sha256:")
            .filter(|hex| is_sha256_hex(hex))
        else {
            report.problems.push(format!(
                "Ollama model {model_name}: unexpected layer digest {:?}",
                layer.digest
            ));
            continue;
        };
        let blob_path = blobs_root.join(format!("sha256-{hex}"));
        let Some(size_bytes) = gguf_file_size(&blob_path) else {
            report.problems.push(format!(
                "Ollama model {model_name}: blob {} is missing or not a GGUF file",
                blob_path.display()
            ));
            continue;
        };
        report.models.push(DiscoveredModel {
            origin: ImportOrigin::Ollama {
                model_name: model_name.clone(),
            },
            suggested_id: ModelId::suggest_from(&format!("ollama-{model_name}")),
            display_name: model_name,
            path: blob_path,
            size_bytes,
            sha256: Sha256Digest::from_hex(hex).ok(),
        });
    }
}

fn discover_lm_studio(models_root: &Path, report: &mut DiscoveryReport) {
    let mut files = Vec::new();
    collect_files(models_root, MAX_WALK_DEPTH, &mut files, &is_model_gguf_name);
    for path in files {
        let Ok(relative) = path.strip_prefix(models_root) else {
            continue;
        };
        let parts: Vec<String> = relative
            .components()
            .map(|component| component.as_os_str().to_string_lossy().into_owned())
            .collect();
        // <publisher>/<repository>/.../<file>.gguf
        if parts.len() < 3 {
            continue;
        }
        let Some(size_bytes) = gguf_file_size(&path) else {
            report.problems.push(format!(
                "LM Studio file {} is not a GGUF file",
                path.display()
            ));
            continue;
        };
        let model_name = format!("{}/{}", parts[0], parts[1]);
        let file_name = &parts[parts.len() - 1];
        report.models.push(DiscoveredModel {
            origin: ImportOrigin::LmStudio {
                model_name: model_name.clone(),
            },
            display_name: format!("{model_name}/{file_name}"),
            suggested_id: ModelId::suggest_from(&format!("lmstudio-{file_name}")),
            path,
            size_bytes,
            sha256: None,
        });
    }
}

fn discover_huggingface_cache(hub_root: &Path, report: &mut DiscoveryReport) {
    let Ok(entries) = fs::read_dir(hub_root) else {
        return;
    };
    for entry in entries.flatten() {
        let folder_name = entry.file_name().to_string_lossy().into_owned();
        let Some(repo_part) = folder_name.strip_prefix("models--") else {
            continue;
        };
        let Some((owner, name)) = repo_part.split_once("--") else {
            continue;
        };
        let repo = format!("{owner}/{name}");
        let Ok(snapshots) = fs::read_dir(entry.path().join("snapshots")) else {
            continue;
        };
        for snapshot in snapshots.flatten() {
            let revision = snapshot.file_name().to_string_lossy().into_owned();
            let snapshot_root = snapshot.path();
            let mut files = Vec::new();
            collect_files(
                &snapshot_root,
                MAX_WALK_DEPTH,
                &mut files,
                &is_model_gguf_name,
            );
            for path in files {
                let Some(size_bytes) = gguf_file_size(&path) else {
                    report.problems.push(format!(
                        "Hugging Face cache file {} is missing its blob or is not a GGUF file",
                        path.display()
                    ));
                    continue;
                };
                // LFS blobs are named by their SHA-256.
                let sha256 = fs::canonicalize(&path)
                    .ok()
                    .and_then(|blob| {
                        blob.file_name()
                            .map(|name| name.to_string_lossy().into_owned())
                    })
                    .filter(|name| is_sha256_hex(name))
                    .and_then(|name| Sha256Digest::from_hex(&name).ok());
                let relative_file = path
                    .strip_prefix(&snapshot_root)
                    .map(|relative| relative.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let file_name = path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                report.models.push(DiscoveredModel {
                    origin: ImportOrigin::HuggingFaceCache {
                        repo: repo.clone(),
                        revision: revision.clone(),
                    },
                    display_name: format!("{repo}/{relative_file}"),
                    suggested_id: ModelId::suggest_from(&file_name),
                    path,
                    size_bytes,
                    sha256,
                });
            }
        }
    }
}

/// A `.gguf` file that is a model on its own: vision projectors (`mmproj-*`) are companions,
/// and only the first part of a split model can be loaded (which split support would need).
fn is_model_gguf_name(file_name: &str) -> bool {
    let lowercase = file_name.to_ascii_lowercase();
    lowercase.ends_with(".gguf") && !lowercase.starts_with("mmproj") && !is_split_part(&lowercase)
}

/// `name-00001-of-00003.gguf` and the like.
fn is_split_part(lowercase_name: &str) -> bool {
    let stem = lowercase_name.trim_end_matches(".gguf");
    let mut parts = stem.rsplitn(4, '-');
    let (Some(count), Some(of), Some(index)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    of == "of"
        && !count.is_empty()
        && !index.is_empty()
        && count.bytes().all(|byte| byte.is_ascii_digit())
        && index.bytes().all(|byte| byte.is_ascii_digit())
}

/// The size of `path` (following links) if it is a regular file starting with the GGUF magic.
fn gguf_file_size(path: &Path) -> Option<u64> {
    let metadata = fs::metadata(path).ok()?;
    if !metadata.is_file() {
        return None;
    }
    let mut magic = [0u8; 4];
    File::open(path).ok()?.read_exact(&mut magic).ok()?;
    (magic == GGUF_MAGIC).then_some(metadata.len())
}

fn read_small_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let size = fs::metadata(path).map_err(|error| error.to_string())?.len();
    if size > MAX_OLLAMA_MANIFEST_BYTES {
        return Err(format!("{} is too large to be a manifest", path.display()));
    }
    let text = fs::read_to_string(path).map_err(|error| error.to_string())?;
    serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

/// Collects files under `root` whose names pass `keep`, following links to files but not to
/// folders (a link cycle cannot trap the walk), to `depth` levels and at most
/// [`MAX_FILES_PER_ROOT`] entries.
fn collect_files(root: &Path, depth: usize, found: &mut Vec<PathBuf>, keep: &dyn Fn(&str) -> bool) {
    let mut pending = vec![(root.to_path_buf(), depth)];
    let mut visited = 0usize;
    while let Some((directory, remaining_depth)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_FILES_PER_ROOT {
                return;
            }
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if file_type.is_dir() {
                if remaining_depth > 0 {
                    pending.push((path, remaining_depth - 1));
                }
            } else if file_type.is_file() || file_type.is_symlink() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && keep(&name) {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_file_names() {
        assert!(is_model_gguf_name("Qwen3-4B-Q4_K_M.gguf"));
        assert!(is_model_gguf_name("model.GGUF"));
        assert!(!is_model_gguf_name("mmproj-model-f16.gguf"));
        assert!(!is_model_gguf_name("model-00001-of-00002.gguf"));
        assert!(!is_model_gguf_name("README.md"));
        assert!(is_model_gguf_name("model-of-ours.gguf"));
    }

    #[test]
    fn missing_roots_are_empty() {
        let roots = DiscoveryRoots::under_home(Path::new("/nonexistent/hearth/home"));
        assert_eq!(discover_external_models(&roots), DiscoveryReport::default());
    }
}
