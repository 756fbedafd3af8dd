//! Resumable, verified downloads.
//!
//! Bytes go to `<file>.partial` next to the destination; an interrupted download resumes with
//! an HTTP Range request (re-hashing the bytes already on disk first, so the SHA-256 always
//! covers the whole file); the digest and size are checked before the file is fsynced and
//! renamed into place. A destination therefore either holds a complete, verified file or does
//! not exist. One OS file lock per destination makes concurrent pulls of the same file, from
//! threads or processes, produce one file: the second waits and then finds it done.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::digest::Sha256Digest;
use crate::error::{ModelsError, Result};
use crate::gguf_summary::GGUF_MAGIC;
use crate::hub::{http_status_error, HubClient};
use crate::transport::{header_text, map_io_error, ByteRange, RequestMethod};

mod control;
mod lock;
mod partial;
mod progress;

use control::sleep_unless_stopped;
pub use control::{ControlRequest, DownloadControl};
pub(crate) use lock::{lock_blocking, lock_exclusive, LockAttempt};
use partial::PartialFile;
use progress::ProgressMeter;
pub use progress::{DownloadProgress, NoProgress, ProgressUpdate};

/// Suffix of the file a download writes into until it is verified.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of the lock file that makes one process the only writer of a destination.
pub const LOCK_SUFFIX: &str = ".lock";

/// Bytes read from the network per step.
const TRANSFER_BUFFER_BYTES: usize = 256 * 1024;
/// At most this much of a non-GGUF answer is quoted in the error.
const NOT_GGUF_EXCERPT_BYTES: usize = 80;

/// Limits and policy for downloads.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// A transfer with no bytes for this long is dropped and retried.
    pub stall_timeout: Duration,
    pub connect_timeout: Duration,
    /// Failed attempts in a row (without any progress between them) before giving up.
    pub max_attempts: u32,
    /// First wait before a retry; it doubles with each failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Free space to leave on the disk beyond the file itself.
    pub free_space_margin_bytes: u64,
    /// How often progress is reported.
    pub progress_interval: Duration,
    /// Hub access token for gated repositories; sent to the hub's host only.
    pub hub_token: Option<String>,
    pub user_agent: String,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            stall_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(20),
            max_attempts: 8,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            free_space_margin_bytes: 512 * 1024 * 1024,
            progress_interval: Duration::from_millis(200),
            hub_token: None,
            user_agent: format!("hearth/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl DownloadConfig {
    /// The wait before retry number `failure_count` (1 for the first retry).
    pub fn backoff(&self, failure_count: u32) -> Duration {
        let doublings = failure_count.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// What to download and how to check it.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    pub url: String,
    pub destination: PathBuf,
    pub expected_sha256: Option<Sha256Digest>,
    pub expected_size_bytes: Option<u64>,
}

/// A verified file in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedDownload {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub sha256: Sha256Digest,
    /// Bytes that were already on disk from an earlier attempt.
    pub resumed_from_bytes: u64,
}

/// How a download ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadOutcome {
    Completed(CompletedDownload),
    /// The destination already held the expected file; nothing was transferred.
    AlreadyPresent(CompletedDownload),
    /// Paused: the partial file is kept and the next download of it resumes.
    Paused {
        bytes_done: u64,
        total_bytes: Option<u64>,
    },
    /// Cancelled: the partial file is deleted.
    Cancelled,
}

/// `<path><suffix>`, as a sibling file.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The partial file of a destination.
pub fn partial_path(destination: &Path) -> PathBuf {
    with_suffix(destination, PARTIAL_SUFFIX)
}

impl HubClient {
    /// Downloads a file to `request.destination`, resuming a partial file left by an earlier
    /// attempt. Holds `<destination>.lock` while it runs; a concurrent download of the same
    /// destination waits, then returns [`DownloadOutcome::AlreadyPresent`].
    pub fn download_file(
        &self,
        request: &DownloadRequest,
        control: &DownloadControl,
        progress: &dyn DownloadProgress,
    ) -> Result<DownloadOutcome> {
        let parent = parent_directory(&request.destination);
        fs::create_dir_all(parent)
            .map_err(|error| ModelsError::io("cannot create folder", parent, error))?;
        let lock_path = with_suffix(&request.destination, LOCK_SUFFIX);
        let _lock = match lock_exclusive(&lock_path, control, progress)? {
            LockAttempt::Acquired(lock) => lock,
            LockAttempt::Stopped(ControlRequest::Cancel) => return Ok(DownloadOutcome::Cancelled),
            LockAttempt::Stopped(ControlRequest::Pause) => {
                return Ok(DownloadOutcome::Paused {
                    bytes_done: 0,
                    total_bytes: request.expected_size_bytes,
                })
            }
        };
        if let Some(present) = existing_complete_file(request)? {
            return Ok(DownloadOutcome::AlreadyPresent(present));
        }
        self.download_locked(request, control, progress)
    }

    /// The download itself; the caller holds the lock and has checked the destination.
    pub(crate) fn download_locked(
        &self,
        request: &DownloadRequest,
        control: &DownloadControl,
        progress: &dyn DownloadProgress,
    ) -> Result<DownloadOutcome> {
        let partial_path = partial_path(&request.destination);
        let mut partial = PartialFile::open(&partial_path, request.expected_size_bytes)?;
        let resumed_from_bytes = partial.length;
        if let Some(expected) = request.expected_size_bytes {
            // Checked before the first request; checked again once the server states a size.
            ensure_free_space(
                parent_directory(&request.destination),
                expected.saturating_sub(resumed_from_bytes),
                self.config.free_space_margin_bytes,
            )?;
        }
        let file_name = request
            .destination
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut meter = ProgressMeter::new(&self.config, resumed_from_bytes);
        progress.started(&file_name, request.expected_size_bytes, resumed_from_bytes);

        let mut failures_in_a_row = 0u32;
        let mut known_total = request.expected_size_bytes;
        loop {
            let length_before_attempt = partial.length;
            let attempt = self.transfer_attempt(
                request,
                &mut partial,
                &mut known_total,
                control,
                progress,
                &mut meter,
            );
            match attempt {
                Ok(AttemptEnd::Complete) => break,
                Ok(AttemptEnd::Stopped(request_kind)) => {
                    return partial.stop(request_kind, known_total);
                }
                Err(error) if error.is_retryable() => {
                    if partial.length > length_before_attempt {
                        failures_in_a_row = 0;
                    }
                    failures_in_a_row += 1;
                    if failures_in_a_row >= self.config.max_attempts {
                        // Nothing arrived (an unreachable hub, say): no partial to resume.
                        if partial.length == 0 {
                            partial.discard();
                        } else {
                            partial.sync()?;
                        }
                        return Err(ModelsError::RetriesExhausted {
                            url: request.url.clone(),
                            attempts: failures_in_a_row,
                            last_error: Box::new(error),
                        });
                    }
                    let delay = self.config.backoff(failures_in_a_row);
                    progress.retrying(failures_in_a_row, delay, &error);
                    if let Some(request_kind) = sleep_unless_stopped(delay, control) {
                        return partial.stop(request_kind, known_total);
                    }
                }
                Err(error) => {
                    // An empty partial is not worth keeping, nor bytes that turned out to belong
                    // to another file; after anything else (a 404, a full disk) they stay for
                    // the next try.
                    if partial.length == 0
                        || matches!(
                            error,
                            ModelsError::SizeMismatch { .. } | ModelsError::DigestMismatch { .. }
                        )
                    {
                        partial.discard();
                    }
                    return Err(error);
                }
            }
        }
        meter.report(partial.length, known_total, progress, true);
        let completed = partial.finish(request, resumed_from_bytes)?;
        progress.finished(&file_name, completed.size_bytes);
        Ok(DownloadOutcome::Completed(completed))
    }

    /// One request and as much of its body as arrives.
    fn transfer_attempt(
        &self,
        request: &DownloadRequest,
        partial: &mut PartialFile,
        known_total: &mut Option<u64>,
        control: &DownloadControl,
        progress: &dyn DownloadProgress,
        meter: &mut ProgressMeter,
    ) -> Result<AttemptEnd> {
        if let Some(request_kind) = control.requested() {
            return Ok(AttemptEnd::Stopped(request_kind));
        }
        let (url, response) = self
            .transport
            .send(
                RequestMethod::Get,
                &request.url,
                Some(ByteRange {
                    start: partial.length,
                    last: None,
                }),
                false,
            )
            .map_err(|error| self.with_stall_timeout(error))?;
        let status = response.status().as_u16();
        let header = |name: &str| header_text(&response, name);
        let content_length: Option<u64> =
            header("content-length").and_then(|value| value.parse().ok());
        let content_range = header("content-range").and_then(parse_content_range);
        let body_total = match status {
            200 => {
                // The server ignored our Range (or there was none): the body is the whole file.
                if partial.length > 0 {
                    partial.restart()?;
                }
                content_length
            }
            206 => match content_range {
                Some(range) if range.start == partial.length => range
                    .total
                    .or_else(|| content_length.map(|length| partial.length + length)),
                Some(range) if range.start == 0 => {
                    partial.restart()?;
                    range.total
                }
                _ => {
                    let reason = format!(
                        "asked for bytes from {}, the server sent another range",
                        partial.length
                    );
                    return Err(ModelsError::Network { url, reason });
                }
            },
            416 => {
                // Asking for bytes past the end: the partial may already be the whole file.
                match content_range.and_then(|range| range.total) {
                    Some(total) if total == partial.length && total > 0 => {
                        *known_total = Some(total);
                        return Ok(AttemptEnd::Complete);
                    }
                    _ => {
                        partial.restart()?;
                        return Err(ModelsError::Network {
                            url,
                            reason: "the server refused the byte range; starting over".to_string(),
                        });
                    }
                }
            }
            other => return Err(http_status_error(&url, other)),
        };

        if let Some(content_type) = header("content-type") {
            if content_type.to_ascii_lowercase().starts_with("text/html") {
                return Err(ModelsError::NotGguf {
                    url,
                    detail: format!(
                        "the server sent an HTML page (Content-Type: {content_type}); the \
                         repository may be gated or the file name wrong"
                    ),
                });
            }
        }
        if let (Some(expected), Some(actual)) = (request.expected_size_bytes, body_total) {
            if expected != actual {
                return Err(ModelsError::SizeMismatch {
                    subject: format!("{url} (server's length vs. expected)"),
                    expected,
                    actual,
                });
            }
        }
        if let Some(total) = body_total {
            *known_total = Some(total);
            if partial.length > total {
                partial.restart()?;
            }
            ensure_free_space(
                parent_directory(&request.destination),
                total - partial.length,
                self.config.free_space_margin_bytes,
            )?;
        }

        let mut reader = response.into_body().into_reader();
        let mut buffer = vec![0u8; TRANSFER_BUFFER_BYTES];
        loop {
            if let Some(request_kind) = control.requested() {
                return Ok(AttemptEnd::Stopped(request_kind));
            }
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.with_stall_timeout(map_io_error(&url, error))),
            };
            let chunk = &buffer[..read];
            check_gguf_magic(partial.length, chunk, &url)?;
            let limit = (*known_total).or(request.expected_size_bytes);
            if let Some(limit) = limit {
                if partial.length + read as u64 > limit {
                    return Err(ModelsError::SizeMismatch {
                        subject: url,
                        expected: limit,
                        actual: partial.length + read as u64,
                    });
                }
            }
            partial.append(chunk)?;
            meter.report(partial.length, *known_total, progress, false);
        }
        match *known_total {
            Some(total) if partial.length < total => Err(ModelsError::Network {
                url,
                reason: format!(
                    "the connection closed after {} of {total} bytes",
                    partial.length
                ),
            }),
            _ => Ok(AttemptEnd::Complete),
        }
    }
}

enum AttemptEnd {
    Complete,
    Stopped(ControlRequest),
}

/// Whether the destination already holds the requested file (checked by size and digest).
fn existing_complete_file(request: &DownloadRequest) -> Result<Option<CompletedDownload>> {
    let destination = &request.destination;
    let Ok(metadata) = fs::metadata(destination) else {
        return Ok(None);
    };
    if !metadata.is_file()
        || request
            .expected_size_bytes
            .is_some_and(|expected| expected != metadata.len())
    {
        return Ok(None);
    }
    let digest = crate::digest::sha256_of_file(destination, |_| {})?;
    if request
        .expected_sha256
        .is_some_and(|expected| expected != digest)
    {
        return Ok(None);
    }
    Ok(Some(CompletedDownload {
        path: destination.clone(),
        size_bytes: metadata.len(),
        sha256: digest,
        resumed_from_bytes: metadata.len(),
    }))
}

/// Rejects a body whose first bytes are not the GGUF magic, before any of it is written.
fn check_gguf_magic(offset: u64, chunk: &[u8], url: &str) -> Result<()> {
    let magic_length = GGUF_MAGIC.len() as u64;
    if offset >= magic_length {
        return Ok(());
    }
    let overlap = (magic_length - offset).min(chunk.len() as u64) as usize;
    let expected = &GGUF_MAGIC[offset as usize..offset as usize + overlap];
    if &chunk[..overlap] == expected {
        return Ok(());
    }
    let excerpt: String =
        String::from_utf8_lossy(&chunk[..chunk.len().min(NOT_GGUF_EXCERPT_BYTES)])
            .chars()
            .map(|character| {
                if character.is_control() {
                    ' '
                } else {
                    character
                }
            })
            .collect();
    let looks_like_html = excerpt.trim_start().starts_with('<');
    Err(ModelsError::NotGguf {
        url: url.to_string(),
        detail: if looks_like_html {
            format!(
                "the server sent an HTML page ({:?}...); the repository may be gated or the file name wrong",
                excerpt.trim()
            )
        } else {
            format!(
                "the data does not start with the GGUF magic ({:?}...)",
                excerpt.trim()
            )
        },
    })
}

/// `Content-Range: bytes <start>-<end>/<total>` (or `bytes */<total>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentRange {
    pub start: u64,
    pub total: Option<u64>,
}

pub(crate) fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        digits => Some(digits.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => 0,
        span => span.split_once('-')?.0.trim().parse().ok()?,
    };
    Some(ContentRange { start, total })
}

/// Fails when the disk cannot take `needed_bytes` plus the margin.
fn ensure_free_space(directory: &Path, needed_bytes: u64, margin_bytes: u64) -> Result<()> {
    let available_bytes = fs4::available_space(directory)
        .map_err(|error| ModelsError::io("cannot read free space of", directory, error))?;
    let needed_with_margin = needed_bytes.saturating_add(margin_bytes);
    if available_bytes < needed_with_margin {
        return Err(ModelsError::InsufficientSpace {
            path: directory.to_path_buf(),
            needed_bytes: needed_with_margin,
            available_bytes,
        });
    }
    Ok(())
}

pub(crate) fn parent_directory(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Makes a rename durable. Directories cannot be opened for syncing on Windows, where the
/// rename is already durable, so failures are ignored.
pub(crate) fn sync_directory(directory: &Path) {
    if let Ok(handle) = File::open(directory) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests;
