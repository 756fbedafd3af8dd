//! Getting one model file into place, checked: reusing a complete file a dead pull left,
//! downloading it, or copying an imported file, hashing as it goes with progress. Shared by
//! whole models (library.rs) and the parts of split models (split.rs).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use crate::digest::{sha256_of_file, Sha256Digest, Sha256Hasher, HASH_BUFFER_BYTES};
use crate::download::{
    partial_path, sync_directory, DownloadControl, DownloadOutcome, DownloadProgress,
    DownloadRequest, ProgressUpdate,
};
use crate::error::{ModelsError, Result};
use crate::hub::HubClient;
use crate::library::PullOutcome;

/// The complete file `download` names: one left by a pull that died before writing its
/// manifest, if it checks out, else downloaded; or how the download stopped.
pub(crate) fn fetch(
    hub: &HubClient,
    download: &DownloadRequest,
    control: &DownloadControl,
    progress: &dyn DownloadProgress,
) -> Result<std::result::Result<crate::download::CompletedDownload, PullOutcome>> {
    if let Some(completed) = reuse_complete_file(download)? {
        return Ok(Ok(completed));
    }
    Ok(match hub.download_locked(download, control, progress)? {
        DownloadOutcome::Completed(completed) | DownloadOutcome::AlreadyPresent(completed) => {
            Ok(completed)
        }
        DownloadOutcome::Paused {
            bytes_done,
            total_bytes,
        } => Err(PullOutcome::Paused {
            bytes_done,
            total_bytes,
        }),
        DownloadOutcome::Cancelled => Err(PullOutcome::Cancelled),
    })
}

/// A destination file left complete by a pull that died before writing the manifest, if it
/// passes the checks; otherwise it is removed and `None` returned.
fn reuse_complete_file(
    download: &DownloadRequest,
) -> Result<Option<crate::download::CompletedDownload>> {
    let destination = &download.destination;
    let Ok(metadata) = fs::metadata(destination) else {
        return Ok(None);
    };
    let size_matches = download
        .expected_size_bytes
        .is_none_or(|expected| expected == metadata.len());
    if metadata.is_file() && size_matches {
        let sha256 = sha256_of_file(destination, |_| {})?;
        if download
            .expected_sha256
            .is_none_or(|expected| expected == sha256)
        {
            return Ok(Some(crate::download::CompletedDownload {
                path: destination.clone(),
                size_bytes: metadata.len(),
                sha256,
                resumed_from_bytes: metadata.len(),
            }));
        }
    }
    fs::remove_file(destination)
        .map_err(|error| ModelsError::io("cannot remove", destination, error))?;
    Ok(None)
}

/// Hashes a file (`total_bytes` long), reporting progress as a download would: for in-place
/// imports, and for the CLI's check of a file against a catalog digest.
pub fn hash_with_progress(
    path: &Path,
    total_bytes: u64,
    progress: &dyn DownloadProgress,
) -> Result<Sha256Digest> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    progress.started(&file_name, Some(total_bytes), 0);
    let digest = sha256_of_file(path, |bytes_done| {
        progress.advanced(&ProgressUpdate {
            bytes_done,
            total_bytes: Some(total_bytes),
            bytes_per_second: 0.0,
            eta: None,
        });
    })?;
    progress.finished(&file_name, total_bytes);
    Ok(digest)
}

/// Copies `source` to `destination` through a `.partial` file, hashing on the way, and
/// renames it into place only when complete.
pub(crate) fn copy_verified(
    source: &Path,
    destination: &Path,
    progress: &dyn DownloadProgress,
) -> Result<(Sha256Digest, u64)> {
    let partial = partial_path(destination);
    let mut input =
        File::open(source).map_err(|error| ModelsError::io("cannot open", source, error))?;
    let total_bytes = input
        .metadata()
        .map_err(|error| ModelsError::io("cannot read", source, error))?
        .len();
    let mut output = File::create(&partial)
        .map_err(|error| ModelsError::io("cannot create", &partial, error))?;
    let file_name = destination
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    progress.started(&file_name, Some(total_bytes), 0);
    let mut hasher = Sha256Hasher::new();
    let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
    let mut copied = 0u64;
    let result = (|| -> Result<()> {
        loop {
            let read = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(ModelsError::io("cannot read", source, error)),
            };
            output
                .write_all(&buffer[..read])
                .map_err(|error| ModelsError::io("cannot write", &partial, error))?;
            hasher.update(&buffer[..read]);
            copied += read as u64;
            progress.advanced(&ProgressUpdate {
                bytes_done: copied,
                total_bytes: Some(total_bytes),
                bytes_per_second: 0.0,
                eta: None,
            });
        }
        output
            .sync_all()
            .map_err(|error| ModelsError::io("cannot flush", &partial, error))
    })();
    drop(output);
    if let Err(error) = result {
        let _ = fs::remove_file(&partial);
        return Err(error);
    }
    fs::rename(&partial, destination)
        .map_err(|error| ModelsError::io("cannot move into place", destination, error))?;
    if let Some(directory) = destination.parent() {
        sync_directory(directory);
    }
    progress.finished(&file_name, copied);
    Ok((hasher.finish(), copied))
}
