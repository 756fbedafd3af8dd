//! Resumable, verified downloads.
//!
//! Bytes go to `<file>.partial` next to the destination; an interrupted download resumes with
//! an HTTP Range request (re-hashing the bytes already on disk first, so the SHA-256 always
//! covers the whole file); the digest and size are checked before the file is fsynced and
//! renamed into place. A destination therefore either holds a complete, verified file or does
//! not exist. One OS file lock per destination makes concurrent pulls of the same file, from
//! threads or processes, produce one file: the second waits and then finds it done.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::digest::{Sha256Digest, Sha256Hasher, HASH_BUFFER_BYTES};
use crate::error::{ModelsError, Result};
use crate::gguf_summary::GGUF_MAGIC;
use crate::hub::{http_status_error, HubClient};
use crate::transport::{header_text, map_io_error, ByteRange, RequestMethod};

/// Suffix of the file a download writes into until it is verified.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of the lock file that makes one process the only writer of a destination.
pub const LOCK_SUFFIX: &str = ".lock";

/// Bytes read from the network per step.
const TRANSFER_BUFFER_BYTES: usize = 256 * 1024;
/// How often a paused or cancelled download, or one waiting for a lock, looks at its control.
const CONTROL_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Time constant of the transfer-rate average: long enough to smooth bursts, short enough to
/// follow a real change of speed within seconds.
const RATE_SMOOTHING_SECONDS: f64 = 3.0;
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

const CONTROL_RUN: u8 = 0;
const CONTROL_PAUSE: u8 = 1;
const CONTROL_CANCEL: u8 = 2;

/// A handle to steer a running download from another thread (a UI button, Ctrl-C, an HTTP
/// request). Pausing keeps the partial file so the next pull resumes; cancelling deletes it.
/// Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct DownloadControl {
    state: Arc<AtomicU8>,
}

/// What a control asks of a running download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    Pause,
    Cancel,
}

impl DownloadControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop soon, keeping the partial file.
    pub fn pause(&self) {
        // A cancel wins over a later pause.
        let _ = self.state.compare_exchange(
            CONTROL_RUN,
            CONTROL_PAUSE,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Stop soon and delete the partial file.
    pub fn cancel(&self) {
        self.state.store(CONTROL_CANCEL, Ordering::SeqCst);
    }

    /// Clears a pause or cancel so the same handle can drive the next pull.
    pub fn resume(&self) {
        self.state.store(CONTROL_RUN, Ordering::SeqCst);
    }

    /// The pending request, if any.
    pub fn requested(&self) -> Option<ControlRequest> {
        match self.state.load(Ordering::SeqCst) {
            CONTROL_PAUSE => Some(ControlRequest::Pause),
            CONTROL_CANCEL => Some(ControlRequest::Cancel),
            _ => None,
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    pub bytes_done: u64,
    pub total_bytes: Option<u64>,
    /// Smoothed transfer rate of this session (bytes resumed from disk do not count).
    pub bytes_per_second: f64,
    /// Time left at the current rate, when the total and a rate are known.
    pub eta: Option<Duration>,
}

/// Receives download progress. The CLI draws a progress bar from it, the server turns it into
/// server-sent events. Every method has a default that ignores the event.
pub trait DownloadProgress {
    /// The transfer is about to start; `resumed_from_bytes` were already on disk.
    fn started(&self, _file_name: &str, _total_bytes: Option<u64>, _resumed_from_bytes: u64) {}
    /// Bytes arrived (reported at most every `progress_interval`, and once at the end).
    fn advanced(&self, _update: &ProgressUpdate) {}
    /// An attempt failed with a retryable error; the next one starts after `delay`.
    fn retrying(&self, _failed_attempts: u32, _delay: Duration, _reason: &ModelsError) {}
    /// Another download of the same file holds the lock; this one waits for it to finish.
    fn waiting_for_other_download(&self, _lock_path: &Path) {}
    /// The file is complete and verified.
    fn finished(&self, _file_name: &str, _size_bytes: u64) {}
}

/// A [`DownloadProgress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl DownloadProgress for NoProgress {}

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

/// Sleeps, waking early when the control asks to stop.
fn sleep_unless_stopped(duration: Duration, control: &DownloadControl) -> Option<ControlRequest> {
    let deadline = Instant::now() + duration;
    loop {
        if let Some(request_kind) = control.requested() {
            return Some(request_kind);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep((deadline - now).min(CONTROL_POLL_INTERVAL));
    }
}

/// The bytes of an unfinished download and the running SHA-256 over them.
struct PartialFile {
    path: PathBuf,
    file: File,
    length: u64,
    hasher: Sha256Hasher,
}

impl PartialFile {
    /// Opens or creates the partial file and hashes what it already holds. Bytes that cannot
    /// belong to the file (no GGUF magic, longer than expected) are dropped.
    fn open(path: &Path, expected_size_bytes: Option<u64>) -> Result<PartialFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|error| ModelsError::io("cannot open", path, error))?;
        let existing_length = file
            .metadata()
            .map_err(|error| ModelsError::io("cannot read", path, error))?
            .len();
        let mut partial = PartialFile {
            path: path.to_path_buf(),
            file,
            length: 0,
            hasher: Sha256Hasher::new(),
        };
        let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
        while partial.length < existing_length {
            let read = match partial.file.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(ModelsError::io("cannot read", path, error)),
            };
            let bytes = &buffer[..read];
            if partial.length == 0 && !bytes.starts_with(&GGUF_MAGIC[..read.min(GGUF_MAGIC.len())])
            {
                break;
            }
            partial.hasher.update(bytes);
            partial.length += read as u64;
        }
        let plausible = partial.length == existing_length
            && expected_size_bytes.is_none_or(|expected| partial.length <= expected);
        if !plausible {
            partial.restart()?;
        }
        partial
            .file
            .seek(SeekFrom::Start(partial.length))
            .map_err(|error| ModelsError::io("cannot seek in", path, error))?;
        Ok(partial)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|error| ModelsError::io("cannot write", &self.path, error))?;
        self.hasher.update(bytes);
        self.length += bytes.len() as u64;
        Ok(())
    }

    /// Starts over from zero bytes.
    fn restart(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|error| ModelsError::io("cannot truncate", &self.path, error))?;
        self.length = 0;
        self.hasher = Sha256Hasher::new();
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|error| ModelsError::io("cannot flush", &self.path, error))
    }

    /// Deletes the partial file (best effort: a leftover is re-validated on the next open).
    fn discard(self) {
        drop(self.file);
        let _ = fs::remove_file(&self.path);
    }

    /// Ends the download as the control asked.
    fn stop(
        self,
        request_kind: ControlRequest,
        total_bytes: Option<u64>,
    ) -> Result<DownloadOutcome> {
        match request_kind {
            ControlRequest::Pause => {
                self.sync()?;
                Ok(DownloadOutcome::Paused {
                    bytes_done: self.length,
                    total_bytes,
                })
            }
            ControlRequest::Cancel => {
                self.discard();
                Ok(DownloadOutcome::Cancelled)
            }
        }
    }

    /// Verifies size and digest, then fsyncs and renames the file into place.
    fn finish(
        self,
        request: &DownloadRequest,
        resumed_from_bytes: u64,
    ) -> Result<CompletedDownload> {
        if let Some(expected) = request.expected_size_bytes {
            if self.length != expected {
                let actual = self.length;
                self.discard();
                return Err(ModelsError::SizeMismatch {
                    subject: request.url.clone(),
                    expected,
                    actual,
                });
            }
        }
        if self.length < GGUF_MAGIC.len() as u64 {
            let actual = self.length;
            self.discard();
            return Err(ModelsError::NotGguf {
                url: request.url.clone(),
                detail: format!("the server sent only {actual} bytes"),
            });
        }
        let digest = self.hasher.clone().finish();
        if let Some(expected) = request.expected_sha256 {
            if expected != digest {
                self.discard();
                return Err(ModelsError::DigestMismatch {
                    subject: request.url.clone(),
                    expected: expected.to_hex(),
                    actual: digest.to_hex(),
                });
            }
        }
        self.sync()?;
        let PartialFile {
            path, file, length, ..
        } = self;
        drop(file);
        fs::rename(&path, &request.destination).map_err(|error| {
            ModelsError::io("cannot move into place", &request.destination, error)
        })?;
        sync_directory(parent_directory(&request.destination));
        Ok(CompletedDownload {
            path: request.destination.clone(),
            size_bytes: length,
            sha256: digest,
            resumed_from_bytes,
        })
    }
}

/// Makes a rename durable. Directories cannot be opened for syncing on Windows, where the
/// rename is already durable, so failures are ignored.
pub(crate) fn sync_directory(directory: &Path) {
    if let Ok(handle) = File::open(directory) {
        let _ = handle.sync_all();
    }
}

/// Throttles progress reports and estimates rate and time left.
struct ProgressMeter {
    interval: Duration,
    last_report: Option<Instant>,
    last_bytes: u64,
    bytes_per_second: f64,
}

impl ProgressMeter {
    fn new(config: &DownloadConfig, starting_bytes: u64) -> Self {
        ProgressMeter {
            interval: config.progress_interval,
            last_report: None,
            last_bytes: starting_bytes,
            bytes_per_second: 0.0,
        }
    }

    fn report(
        &mut self,
        bytes_done: u64,
        total_bytes: Option<u64>,
        progress: &dyn DownloadProgress,
        force: bool,
    ) {
        let now = Instant::now();
        let Some(last_report) = self.last_report else {
            // The first call only starts the clock: a rate needs two points in time.
            self.last_report = Some(now);
            self.last_bytes = bytes_done;
            if force {
                progress.advanced(&self.update(bytes_done, total_bytes));
            }
            return;
        };
        let elapsed = now.duration_since(last_report);
        if elapsed < self.interval && !force {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        if seconds > 0.0 {
            let instant_rate = bytes_done.saturating_sub(self.last_bytes) as f64 / seconds;
            self.bytes_per_second = smooth_rate(self.bytes_per_second, instant_rate, seconds);
        }
        self.last_report = Some(now);
        self.last_bytes = bytes_done;
        progress.advanced(&self.update(bytes_done, total_bytes));
    }

    fn update(&self, bytes_done: u64, total_bytes: Option<u64>) -> ProgressUpdate {
        ProgressUpdate {
            bytes_done,
            total_bytes,
            bytes_per_second: self.bytes_per_second,
            eta: estimate_eta(bytes_done, total_bytes, self.bytes_per_second),
        }
    }
}

/// Exponential moving average with time constant [`RATE_SMOOTHING_SECONDS`]; the first sample
/// is taken as it is.
pub(crate) fn smooth_rate(previous_rate: f64, instant_rate: f64, elapsed_seconds: f64) -> f64 {
    if previous_rate <= 0.0 {
        return instant_rate;
    }
    let weight = 1.0 - (-elapsed_seconds / RATE_SMOOTHING_SECONDS).exp();
    previous_rate + weight * (instant_rate - previous_rate)
}

pub(crate) fn estimate_eta(
    bytes_done: u64,
    total_bytes: Option<u64>,
    bytes_per_second: f64,
) -> Option<Duration> {
    let remaining = total_bytes?.saturating_sub(bytes_done) as f64;
    if bytes_per_second <= 0.0 || !bytes_per_second.is_finite() {
        return None;
    }
    Duration::try_from_secs_f64(remaining / bytes_per_second).ok()
}

/// An exclusive OS lock on a lock file; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

pub(crate) enum LockAttempt {
    Acquired(FileLock),
    Stopped(ControlRequest),
}

fn open_lock_file(lock_path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)
        .map_err(|error| ModelsError::io("cannot open lock file", lock_path, error))
}

/// Takes the lock, blocking until whoever holds it lets go.
pub(crate) fn lock_blocking(lock_path: &Path) -> Result<FileLock> {
    let file = open_lock_file(lock_path)?;
    fs4::FileExt::lock(&file).map_err(|error| ModelsError::io("cannot lock", lock_path, error))?;
    Ok(FileLock { file })
}

/// Takes the lock, waiting (and telling `progress` once) while another download holds it,
/// and giving up when the control asks to stop.
pub(crate) fn lock_exclusive(
    lock_path: &Path,
    control: &DownloadControl,
    progress: &dyn DownloadProgress,
) -> Result<LockAttempt> {
    let file = open_lock_file(lock_path)?;
    let mut told_progress = false;
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => return Ok(LockAttempt::Acquired(FileLock { file })),
            Err(fs4::TryLockError::WouldBlock) => {
                if !told_progress {
                    progress.waiting_for_other_download(lock_path);
                    told_progress = true;
                }
                if let Some(request_kind) = control.requested() {
                    return Ok(LockAttempt::Stopped(request_kind));
                }
                std::thread::sleep(CONTROL_POLL_INTERVAL);
            }
            Err(fs4::TryLockError::Error(error)) => {
                return Err(ModelsError::io("cannot lock", lock_path, error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some(ContentRange {
                start: 100,
                total: Some(200)
            })
        );
        assert_eq!(
            parse_content_range("bytes */500"),
            Some(ContentRange {
                start: 0,
                total: Some(500)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*"),
            Some(ContentRange {
                start: 5,
                total: None
            })
        );
        for bad in ["", "bytes", "items 1-2/3", "bytes x-1/2", "bytes 1-2/x"] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = DownloadConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..DownloadConfig::default()
        };
        let delays: Vec<u64> = (1..=6).map(|n| config.backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(config.backoff(1000), Duration::from_secs(10));
    }

    #[test]
    fn rate_and_eta() {
        assert_eq!(smooth_rate(0.0, 100.0, 0.2), 100.0);
        let smoothed = smooth_rate(100.0, 200.0, 0.2);
        assert!(smoothed > 100.0 && smoothed < 200.0, "{smoothed}");
        assert_eq!(
            estimate_eta(50, Some(150), 10.0),
            Some(Duration::from_secs(10))
        );
        assert_eq!(estimate_eta(50, None, 10.0), None);
        assert_eq!(estimate_eta(50, Some(150), 0.0), None);
    }

    #[test]
    fn magic_is_checked_across_chunk_boundaries() {
        assert!(check_gguf_magic(0, b"GGUF\x03\x00", "u").is_ok());
        assert!(check_gguf_magic(0, b"GG", "u").is_ok());
        assert!(check_gguf_magic(2, b"UF", "u").is_ok());
        assert!(check_gguf_magic(4, b"anything", "u").is_ok());
        assert!(check_gguf_magic(2, b"XX", "u").is_err());
        let error = check_gguf_magic(0, b"<!DOCTYPE html><html>", "u")
            .unwrap_err()
            .to_string();
        assert!(error.contains("HTML"), "{error}");
    }

    #[test]
    fn control_cancel_wins_over_pause() {
        let control = DownloadControl::new();
        assert_eq!(control.requested(), None);
        control.cancel();
        control.pause();
        assert_eq!(control.requested(), Some(ControlRequest::Cancel));
        control.resume();
        control.pause();
        assert_eq!(control.requested(), Some(ControlRequest::Pause));
    }
}
