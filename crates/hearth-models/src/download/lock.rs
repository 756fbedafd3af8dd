//! One writer per destination: an exclusive OS lock on `<file>.lock`, taken blocking or
//! waiting while another download (a thread or a process) holds it.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::control::{ControlRequest, DownloadControl, CONTROL_POLL_INTERVAL};
use super::progress::DownloadProgress;
use crate::error::{ModelsError, Result};

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
