//! `hearth-models` knows which models exist, gets them onto the disk and keeps track of them:
//! the curated catalog (`models/catalog.toml`), resumable and verified downloads from the
//! Hugging Face hub (or a mirror), the local library under `<HEARTH_HOME>/models` with one
//! JSON manifest per installed model, imports of local GGUF files, and discovery of models that
//! Ollama, LM Studio and the Hugging Face cache already hold, for registering them in place.
//!
//! It is a leaf crate: no llama.cpp, no async runtime, no server. The CLI (`hearth pull`, `ls`,
//! `rm`, `import`) and the server's management endpoints call [`ModelLibrary`] and
//! [`HubClient`] and show progress through their own [`DownloadProgress`] implementations;
//! front ends that stay up run downloads in the background with [`DownloadManager`] (ids,
//! pause, resume, cancel, status snapshots and subscriptions).
//!
//! Invariants:
//! - A model is installed exactly when `<models dir>/<id>/manifest.json` is valid and its file
//!   has the recorded size. The manifest is written last, atomically, after the file was
//!   verified (SHA-256 and size) and renamed into place; partial downloads are never listed.
//! - Model ids are validated ([`ModelId`]) before they become paths.
//! - Network access is https, or plain http to loopback only; every redirect is checked, and
//!   one from another machine may not lead to this machine's own addresses.
//! - Deleting an in-place model removes Hearth's record only, never the other tool's file.

mod catalog;
mod digest;
mod discover;
mod download;
mod draft;
mod error;
mod fetch;
mod gguf_summary;
mod hub;
mod id;
mod library;
mod manager;
mod manifest;
mod split;
mod transport;

pub use catalog::{
    is_known_quantization, Catalog, CatalogFile, CatalogModel, BUILTIN_CATALOG_TOML,
    CATALOG_SCHEMA_VERSION, DEFAULT_REVISION, KNOWN_QUANTIZATIONS,
};
pub use digest::{is_sha256_hex, sha256_of_file, Sha256Digest};
pub use discover::{
    discover_external_models, DiscoveredModel, DiscoveryReport, DiscoveryRoots,
    OLLAMA_MODEL_MEDIA_TYPE,
};
pub use download::{
    partial_path, CompletedDownload, ControlRequest, DownloadConfig, DownloadControl,
    DownloadOutcome, DownloadProgress, DownloadRequest, NoProgress, ProgressUpdate, LOCK_SUFFIX,
    PARTIAL_SUFFIX,
};
pub use draft::{catalog_draft, DraftChoice};
pub use error::{ModelsError, Result};
pub use fetch::hash_with_progress;
pub use gguf_summary::{file_type_name, summarize_gguf, GgufSummary, GGUF_MAGIC};
pub use hub::{
    hub_endpoint_from, resolve_url, validate_repo_file_path, validate_revision, HubClient, HubRepo,
    RemoteFileInfo, RemoteHeader, DEFAULT_HUB_ENDPOINT, FIRST_HEADER_PREFIX_BYTES,
    HUB_ENDPOINT_ENV, HUB_TOKEN_ENV, MAX_HEADER_PREFIX_BYTES,
};
pub use id::{ModelId, MAX_MODEL_ID_LEN};
pub use library::{
    BrokenModel, ImportMode, ImportRequest, InstalledModel, LibraryListing, ModelLibrary,
    PartialDownload, PullOutcome, PullRequest, INSTALL_LOCK_FILE_NAME,
};
pub use manager::{DownloadId, DownloadManager, DownloadState, DownloadStatus};
pub use manifest::{
    format_rfc3339_utc, now_rfc3339, ImportOrigin, ModelManifest, ModelSource, MANIFEST_FILE_NAME,
    MANIFEST_FORMAT_VERSION,
};
pub use split::ModelPart;
