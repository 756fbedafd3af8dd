//! The partial file of an unfinished download: opened and re-hashed on resume (bytes that
//! cannot belong to the file dropped), appended to, then checked, fsynced and renamed into
//! place.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{
    parent_directory, sync_directory, CompletedDownload, ControlRequest, DownloadOutcome,
    DownloadRequest,
};
use crate::digest::{Sha256Hasher, HASH_BUFFER_BYTES};
use crate::error::{ModelsError, Result};
use crate::gguf_summary::GGUF_MAGIC;

/// The bytes of an unfinished download and the running SHA-256 over them.
pub(super) struct PartialFile {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) length: u64,
    pub(super) hasher: Sha256Hasher,
}

impl PartialFile {
    /// Opens or creates the partial file and hashes what it already holds. Bytes that cannot
    /// belong to the file (no GGUF magic, longer than expected) are dropped.
    pub(super) fn open(path: &Path, expected_size_bytes: Option<u64>) -> Result<PartialFile> {
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

    pub(super) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|error| ModelsError::io("cannot write", &self.path, error))?;
        self.hasher.update(bytes);
        self.length += bytes.len() as u64;
        Ok(())
    }

    /// Starts over from zero bytes.
    pub(super) fn restart(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|error| ModelsError::io("cannot truncate", &self.path, error))?;
        self.length = 0;
        self.hasher = Sha256Hasher::new();
        Ok(())
    }

    pub(super) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|error| ModelsError::io("cannot flush", &self.path, error))
    }

    /// Deletes the partial file (best effort: a leftover is re-validated on the next open).
    pub(super) fn discard(self) {
        drop(self.file);
        let _ = fs::remove_file(&self.path);
    }

    /// Ends the download as the control asked.
    pub(super) fn stop(
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
    pub(super) fn finish(
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
