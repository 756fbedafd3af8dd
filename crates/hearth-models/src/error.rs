//! The one error type of this crate. Every variant carries the context a user needs to act on
//! it (the path, model id, URL, or the expected and actual values), because these errors end up
//! verbatim in the CLI and in the management API's error object.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything that can go wrong in the catalog, downloads, the library and imports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelsError {
    #[error("invalid model id {id:?}: {reason}")]
    InvalidModelId { id: String, reason: &'static str },

    #[error("model {id} is not installed")]
    ModelNotInstalled { id: String },

    #[error("no download with id {id}")]
    UnknownDownload { id: u64 },

    #[error("model id {id} is already taken by another installed model ({existing})")]
    ModelIdTaken { id: String, existing: String },

    #[error("model {id} has a broken manifest at {}: {reason}", path.display())]
    BrokenManifest {
        id: String,
        path: PathBuf,
        reason: String,
    },

    /// An in-place model's file is not the one imported: its size or modification time
    /// differs from the manifest's. Importing it again records the new file.
    #[error("model {id}'s file {} changed since it was imported ({detail}); import it again or `hearth rm {id}`", path.display())]
    ModelFileChanged {
        id: String,
        path: PathBuf,
        detail: String,
    },

    /// A split model's first part whose other parts are missing or do not match it, or a
    /// later part given instead of the first.
    #[error("{} is part of a split model that cannot be used: {reason}", path.display())]
    IncompleteSplit { path: PathBuf, reason: String },

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("catalog {origin} cannot be read: {reason}")]
    CatalogParse { origin: String, reason: String },

    #[error("catalog {origin} is invalid:\n  - {}", problems.join("\n  - "))]
    CatalogInvalid {
        origin: String,
        problems: Vec<String>,
    },

    #[error("{id:?} is not in the model catalog")]
    UnknownCatalogModel { id: String },

    #[error("catalog model {id} has no {quantization} file (available: {})", available.join(", "))]
    UnknownQuantization {
        id: String,
        quantization: String,
        available: Vec<String>,
    },

    #[error("invalid Hugging Face repository {repo:?}: {reason}")]
    InvalidRepository { repo: String, reason: &'static str },

    #[error("invalid file name {name:?}: {reason}")]
    InvalidFileName { name: String, reason: &'static str },

    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "refusing {url}: only https URLs are allowed (plain http only to 127.0.0.1, ::1 or localhost)"
    )]
    InsecureUrl { url: String },

    #[error(
        "refusing the redirect from {from} to {to}: only https URLs are allowed (plain http only to a loopback address)"
    )]
    InsecureRedirect { from: String, to: String },

    #[error(
        "refusing the redirect from {from} to {to}: a download from another machine may not lead to this machine's own addresses"
    )]
    LocalRedirect { from: String, to: String },

    #[error("too many redirects (more than {limit}) starting at {url}")]
    TooManyRedirects { url: String, limit: u32 },

    #[error("{url} answered HTTP {status}{hint}")]
    HttpStatus {
        url: String,
        status: u16,
        hint: String,
    },

    #[error("network error talking to {url}: {reason}")]
    Network { url: String, reason: String },

    #[error("download from {url} stalled: no bytes arrived for {:.1} s", stall_timeout.as_secs_f64())]
    Stalled {
        url: String,
        stall_timeout: Duration,
    },

    #[error("{url} did not send a GGUF file: {detail}")]
    NotGguf { url: String, detail: String },

    #[error("size mismatch for {subject}: expected {expected} bytes, got {actual} bytes")]
    SizeMismatch {
        subject: String,
        expected: u64,
        actual: u64,
    },

    #[error("SHA-256 mismatch for {subject}: expected {expected}, got {actual}")]
    DigestMismatch {
        subject: String,
        expected: String,
        actual: String,
    },

    #[error("invalid SHA-256 digest {value:?}: expected 64 hexadecimal digits")]
    InvalidDigest { value: String },

    #[error(
        "not enough free disk space in {}: need {needed_bytes} bytes, {available_bytes} available",
        path.display()
    )]
    InsufficientSpace {
        path: PathBuf,
        needed_bytes: u64,
        available_bytes: u64,
    },

    #[error("download of {url} failed after {attempts} attempts; last error: {last_error}")]
    RetriesExhausted {
        url: String,
        attempts: u32,
        #[source]
        last_error: Box<ModelsError>,
    },

    #[error("{} is not a valid GGUF file: {reason}", path.display())]
    InvalidGguf { path: PathBuf, reason: String },

    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },

    #[error("hub API answer from {url} cannot be read: {reason}")]
    HubApi { url: String, reason: String },
}

impl ModelsError {
    /// Wraps an `io::Error` with what was being done and to which path.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        ModelsError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether trying the same transfer again may succeed: network trouble and server-side
    /// hiccups (5xx, 408, 429) are worth a retry; a wrong digest, an HTML page or a missing
    /// file are not and must reach the user at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            ModelsError::Network { .. } | ModelsError::Stalled { .. } => true,
            ModelsError::HttpStatus { status, .. } => {
                *status == 408 || *status == 429 || (500..=599).contains(status)
            }
            _ => false,
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = ModelsError> = std::result::Result<T, E>;
