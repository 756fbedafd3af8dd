//! Downloads that run in the background, for front ends that stay up while a model arrives:
//! the server's management API (start, pause, resume, cancel, list, progress as SSE) and the
//! desktop window.
//!
//! [`DownloadManager::start`] runs [`ModelLibrary::pull`] on a thread of its own and hands back
//! a [`DownloadId`]. Every change of a download (bytes, rate, retries, the end) updates its
//! [`DownloadStatus`], which [`DownloadManager::status`] and [`DownloadManager::list`] return
//! as snapshots and [`DownloadManager::subscribe`] (a channel) or
//! [`DownloadManager::subscribe_with`] (a callback, for bridging into an async runtime) push as
//! they happen. Pausing keeps the partial file and resuming continues from it; cancelling
//! deletes it. Everything the library guarantees still holds: a partial download is never an
//! installed model, and two downloads of the same model, here or in another process, produce
//! one verified file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use serde::Serialize;

use crate::download::{DownloadControl, DownloadProgress, ProgressUpdate};
use crate::error::{ModelsError, Result};
use crate::hub::HubClient;
use crate::library::{ModelLibrary, PullOutcome, PullRequest};
use crate::manifest::MANIFEST_FILE_NAME;

/// Names one download for as long as the manager lives; ids are never reused.
pub type DownloadId = u64;

/// Where a download stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DownloadState {
    /// Its thread started; nothing has arrived yet (the hub is being asked, or a lock taken).
    Starting,
    /// Another download of the same model (perhaps in another process) holds the lock.
    WaitingForOtherDownload,
    /// Bytes are arriving.
    Downloading,
    /// An attempt failed with a retryable error; the next one starts after `delay_seconds`.
    Retrying {
        failed_attempts: u32,
        delay_seconds: f64,
        reason: String,
    },
    /// Stopped on request; the partial file is kept and [`DownloadManager::resume`] goes on.
    Paused,
    /// Stopped on request; the partial file is gone.
    Cancelled,
    /// Verified and in the library (or it already was).
    Installed { model_path: PathBuf },
    /// Stopped by an error that retrying would not fix; a partial file worth resuming is kept,
    /// so [`DownloadManager::resume`] may still finish it.
    Failed { error: String },
}

impl DownloadState {
    /// Whether the download's thread is done with it: nothing changes until it is resumed.
    pub fn is_stopped(&self) -> bool {
        matches!(
            self,
            DownloadState::Paused
                | DownloadState::Cancelled
                | DownloadState::Installed { .. }
                | DownloadState::Failed { .. }
        )
    }

    /// Whether nothing can follow: installed or cancelled (a failed or paused download can be
    /// resumed).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            DownloadState::Cancelled | DownloadState::Installed { .. }
        )
    }
}

/// A snapshot of one download.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownloadStatus {
    pub id: DownloadId,
    /// The id the model is installed under.
    pub model_id: String,
    pub repo: String,
    /// Path of the file in the repository.
    pub file: String,
    #[serde(flatten)]
    pub state: DownloadState,
    pub bytes_done: u64,
    pub total_bytes: Option<u64>,
    /// Smoothed rate of the transfer now running; 0 when none is.
    pub bytes_per_second: f64,
    /// Time left at that rate, when known.
    pub eta_seconds: Option<f64>,
}

/// Receives every new status of one download; returns `false` to stop receiving.
type Subscriber = Box<dyn FnMut(&DownloadStatus) -> bool + Send>;

/// One download the manager knows.
struct Entry {
    status: DownloadStatus,
    request: PullRequest,
    control: DownloadControl,
    /// Whether a thread is working on it now.
    running: bool,
    subscribers: Vec<Subscriber>,
}

#[derive(Default)]
struct Downloads {
    next_id: DownloadId,
    entries: BTreeMap<DownloadId, Entry>,
}

/// What every download thread shares.
struct Core {
    library: ModelLibrary,
    hub: HubClient,
    downloads: Mutex<Downloads>,
    /// Signalled whenever a download thread ends.
    thread_ended: Condvar,
}

/// Runs pulls on background threads; clones share the same downloads.
#[derive(Clone)]
pub struct DownloadManager {
    core: Arc<Core>,
}

impl std::fmt::Debug for DownloadManager {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DownloadManager")
            .field("models_directory", &self.core.library.models_directory())
            .field("hub", &self.core.hub.endpoint())
            .finish_non_exhaustive()
    }
}

impl DownloadManager {
    pub fn new(library: ModelLibrary, hub: HubClient) -> DownloadManager {
        DownloadManager {
            core: Arc::new(Core {
                library,
                hub,
                downloads: Mutex::new(Downloads::default()),
                thread_ended: Condvar::new(),
            }),
        }
    }

    pub fn library(&self) -> &ModelLibrary {
        &self.core.library
    }

    /// Starts downloading `request` in the background. A download of the same model id that
    /// the manager already runs is not started twice: its id is returned (and a paused or
    /// failed one is resumed).
    pub fn start(&self, request: PullRequest) -> Result<DownloadId> {
        let mut downloads = self.core.lock();
        let existing = downloads
            .entries
            .iter()
            .find(|(_, entry)| {
                entry.status.model_id == request.model_id.as_str() && !entry.status.state.is_final()
            })
            .map(|(id, _)| *id);
        if let Some(id) = existing {
            drop(downloads);
            self.resume(id)?;
            return Ok(id);
        }
        let id = downloads.next_id;
        downloads.next_id += 1;
        let status = DownloadStatus {
            id,
            model_id: request.model_id.to_string(),
            repo: request.repo.to_string(),
            file: request.file.clone(),
            state: DownloadState::Starting,
            bytes_done: 0,
            total_bytes: request.expected_size_bytes,
            bytes_per_second: 0.0,
            eta_seconds: None,
        };
        downloads.entries.insert(
            id,
            Entry {
                status,
                request,
                control: DownloadControl::new(),
                running: false,
                subscribers: Vec::new(),
            },
        );
        Core::spawn(&self.core, &mut downloads, id);
        Ok(id)
    }

    /// Asks a running download to stop soon, keeping its partial file.
    pub fn pause(&self, id: DownloadId) -> Result<()> {
        let downloads = self.core.lock();
        let entry = downloads.entry(id)?;
        if entry.running {
            entry.control.pause();
        }
        Ok(())
    }

    /// Goes on with a paused or failed download, from its partial file. Does nothing to one
    /// that runs, is installed or was cancelled.
    pub fn resume(&self, id: DownloadId) -> Result<()> {
        let mut downloads = self.core.lock();
        let entry = downloads.entry_mut(id)?;
        if entry.running {
            // A pause not yet noticed is withdrawn; one already noticed restarts the thread
            // when it ends (see `Core::thread_finished`).
            entry.control.resume();
            return Ok(());
        }
        if matches!(
            entry.status.state,
            DownloadState::Paused | DownloadState::Failed { .. }
        ) {
            entry.control.resume();
            Core::spawn(&self.core, &mut downloads, id);
        }
        Ok(())
    }

    /// Stops a download and deletes its partial file. A paused or failed download's partial
    /// file is deleted at once, unless the model got installed meanwhile.
    pub fn cancel(&self, id: DownloadId) -> Result<()> {
        let mut downloads = self.core.lock();
        let entry = downloads.entry_mut(id)?;
        entry.control.cancel();
        if entry.running || entry.status.state.is_final() {
            // A running pull deletes its partial file itself and ends as cancelled.
            return Ok(());
        }
        // Final before the lock is let go, so that nothing resumes it meanwhile.
        entry.status.state = DownloadState::Cancelled;
        entry.status.bytes_done = 0;
        notify(entry);
        entry.subscribers.clear();
        let model_id = entry.request.model_id.clone();
        // `delete` waits for the model's file lock: never wait for it holding ours.
        drop(downloads);
        let directory = self.core.library.model_directory(&model_id);
        if directory.is_dir() && !directory.join(MANIFEST_FILE_NAME).exists() {
            self.core.library.delete(&model_id)?;
        }
        Ok(())
    }

    pub fn status(&self, id: DownloadId) -> Option<DownloadStatus> {
        self.core
            .lock()
            .entries
            .get(&id)
            .map(|entry| entry.status.clone())
    }

    /// Every download the manager knows, oldest first.
    pub fn list(&self) -> Vec<DownloadStatus> {
        self.core
            .lock()
            .entries
            .values()
            .map(|entry| entry.status.clone())
            .collect()
    }

    /// Drops a stopped download from the list (a running one stays). Returns whether it was
    /// dropped.
    pub fn forget(&self, id: DownloadId) -> bool {
        let mut downloads = self.core.lock();
        let stopped = downloads
            .entries
            .get(&id)
            .is_some_and(|entry| !entry.running && entry.status.state.is_stopped());
        if stopped {
            downloads.entries.remove(&id);
        }
        stopped
    }

    /// Calls `subscriber` with the current status at once, then with every change, until it
    /// returns `false` or the download is installed or cancelled. It runs on the download's
    /// thread (or the caller's), with the manager locked: keep it short and never call the
    /// manager from it.
    pub fn subscribe_with(
        &self,
        id: DownloadId,
        mut subscriber: impl FnMut(&DownloadStatus) -> bool + Send + 'static,
    ) -> Result<()> {
        let mut downloads = self.core.lock();
        let entry = downloads.entry_mut(id)?;
        if subscriber(&entry.status) && !entry.status.state.is_final() {
            entry.subscribers.push(Box::new(subscriber));
        }
        Ok(())
    }

    /// A channel that receives the current status, then every change; it closes once the
    /// download is installed or cancelled, or when the manager is dropped.
    pub fn subscribe(&self, id: DownloadId) -> Result<mpsc::Receiver<DownloadStatus>> {
        let (sender, receiver) = mpsc::channel();
        self.subscribe_with(id, move |status| sender.send(status.clone()).is_ok())?;
        Ok(receiver)
    }

    /// Waits until the download's thread is done (installed, paused, cancelled or failed)
    /// or `timeout` passes, and returns its status then.
    pub fn wait(&self, id: DownloadId, timeout: Duration) -> Result<DownloadStatus> {
        let downloads = self.core.lock();
        let (downloads, _) = self
            .core
            .thread_ended
            .wait_timeout_while(downloads, timeout, |downloads| {
                downloads
                    .entries
                    .get(&id)
                    .is_some_and(|entry| entry.running)
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(downloads.entry(id)?.status.clone())
    }
}

impl Downloads {
    fn entry(&self, id: DownloadId) -> Result<&Entry> {
        self.entries
            .get(&id)
            .ok_or(ModelsError::UnknownDownload { id })
    }

    fn entry_mut(&mut self, id: DownloadId) -> Result<&mut Entry> {
        self.entries
            .get_mut(&id)
            .ok_or(ModelsError::UnknownDownload { id })
    }
}

impl Core {
    /// The downloads, even after a subscriber panicked while holding them: every update
    /// leaves them consistent, so the data is still good.
    fn lock(&self) -> MutexGuard<'_, Downloads> {
        self.downloads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the thread of download `id`, which must exist and not be running.
    fn spawn(core: &Arc<Core>, downloads: &mut Downloads, id: DownloadId) {
        let Some(entry) = downloads.entries.get_mut(&id) else {
            return;
        };
        entry.running = true;
        entry.status.state = DownloadState::Starting;
        entry.status.bytes_per_second = 0.0;
        entry.status.eta_seconds = None;
        notify(entry);
        let request = entry.request.clone();
        let control = entry.control.clone();
        let core = Arc::clone(core);
        thread::spawn(move || {
            let progress = ManagerProgress {
                core: Arc::clone(&core),
                id,
            };
            let outcome = core.library.pull(&core.hub, &request, &control, &progress);
            Core::thread_finished(&core, id, outcome, &control);
        });
    }

    fn thread_finished(
        core: &Arc<Core>,
        id: DownloadId,
        outcome: Result<PullOutcome>,
        control: &DownloadControl,
    ) {
        let mut downloads = core.lock();
        let Some(entry) = downloads.entries.get_mut(&id) else {
            return;
        };
        entry.running = false;
        entry.status.bytes_per_second = 0.0;
        entry.status.eta_seconds = None;
        let mut resume_now = false;
        entry.status.state = match outcome {
            Ok(PullOutcome::Installed(installed))
            | Ok(PullOutcome::AlreadyInstalled(installed)) => {
                entry.status.bytes_done = installed.manifest.size_bytes;
                entry.status.total_bytes = Some(installed.manifest.size_bytes);
                DownloadState::Installed {
                    model_path: installed.model_path,
                }
            }
            Ok(PullOutcome::Paused {
                bytes_done,
                total_bytes,
            }) => {
                entry.status.bytes_done = bytes_done;
                entry.status.total_bytes = total_bytes.or(entry.status.total_bytes);
                // Resumed after the thread saw the pause but before it ended.
                resume_now = control.requested().is_none();
                DownloadState::Paused
            }
            Ok(PullOutcome::Cancelled) => {
                entry.status.bytes_done = 0;
                DownloadState::Cancelled
            }
            Err(error) => DownloadState::Failed {
                error: error.to_string(),
            },
        };
        notify(entry);
        if entry.status.state.is_final() {
            entry.subscribers.clear();
        }
        if resume_now {
            Core::spawn(core, &mut downloads, id);
        }
        core.thread_ended.notify_all();
    }

    /// Applies `change` to a running download's status and tells its subscribers.
    fn update(&self, id: DownloadId, change: impl FnOnce(&mut DownloadStatus)) {
        let mut downloads = self.lock();
        if let Some(entry) = downloads.entries.get_mut(&id) {
            change(&mut entry.status);
            notify(entry);
        }
    }
}

/// Sends the entry's status to every subscriber, dropping those that want no more.
fn notify(entry: &mut Entry) {
    let status = &entry.status;
    entry
        .subscribers
        .retain_mut(|subscriber| subscriber(status));
}

/// Turns a pull's progress reports into status changes.
struct ManagerProgress {
    core: Arc<Core>,
    id: DownloadId,
}

impl DownloadProgress for ManagerProgress {
    fn started(&self, _file_name: &str, total_bytes: Option<u64>, resumed_from_bytes: u64) {
        self.core.update(self.id, |status| {
            status.state = DownloadState::Downloading;
            status.bytes_done = resumed_from_bytes;
            status.total_bytes = total_bytes.or(status.total_bytes);
        });
    }

    fn advanced(&self, update: &ProgressUpdate) {
        self.core.update(self.id, |status| {
            status.state = DownloadState::Downloading;
            status.bytes_done = update.bytes_done;
            status.total_bytes = update.total_bytes.or(status.total_bytes);
            status.bytes_per_second = update.bytes_per_second;
            status.eta_seconds = update.eta.map(|eta| eta.as_secs_f64());
        });
    }

    fn retrying(&self, failed_attempts: u32, delay: Duration, reason: &ModelsError) {
        self.core.update(self.id, |status| {
            status.state = DownloadState::Retrying {
                failed_attempts,
                delay_seconds: delay.as_secs_f64(),
                reason: reason.to_string(),
            };
            status.bytes_per_second = 0.0;
            status.eta_seconds = None;
        });
    }

    fn waiting_for_other_download(&self, _lock_path: &Path) {
        self.core.update(self.id, |status| {
            status.state = DownloadState::WaitingForOtherDownload;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_and_final_states() {
        let installed = DownloadState::Installed {
            model_path: PathBuf::from("/m/model.gguf"),
        };
        let failed = DownloadState::Failed {
            error: "404".to_string(),
        };
        assert!(installed.is_stopped() && installed.is_final());
        assert!(DownloadState::Cancelled.is_stopped() && DownloadState::Cancelled.is_final());
        assert!(DownloadState::Paused.is_stopped() && !DownloadState::Paused.is_final());
        assert!(failed.is_stopped() && !failed.is_final());
        for running in [
            DownloadState::Starting,
            DownloadState::Downloading,
            DownloadState::WaitingForOtherDownload,
        ] {
            assert!(!running.is_stopped() && !running.is_final());
        }
    }

    #[test]
    fn statuses_serialize_flat_with_a_state_tag() {
        let status = DownloadStatus {
            id: 3,
            model_id: "qwen3-4b".to_string(),
            repo: "Qwen/Qwen3-4B-GGUF".to_string(),
            file: "Qwen3-4B-Q4_K_M.gguf".to_string(),
            state: DownloadState::Retrying {
                failed_attempts: 2,
                delay_seconds: 4.0,
                reason: "network error".to_string(),
            },
            bytes_done: 10,
            total_bytes: Some(100),
            bytes_per_second: 0.0,
            eta_seconds: None,
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "retrying");
        assert_eq!(json["failed_attempts"], 2);
        assert_eq!(json["model_id"], "qwen3-4b");
        assert_eq!(json["total_bytes"], 100);
    }

    #[test]
    fn the_manager_can_be_shared_across_threads_and_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<DownloadManager>();
        assert_send_sync::<DownloadStatus>();
    }

    #[test]
    fn unknown_downloads_are_errors() {
        let directory = tempfile::tempdir().unwrap();
        let hub = HubClient::new("http://127.0.0.1:9", crate::DownloadConfig::default()).unwrap();
        let manager = DownloadManager::new(ModelLibrary::new(directory.path()), hub);
        assert!(matches!(
            manager.pause(7),
            Err(ModelsError::UnknownDownload { id: 7 })
        ));
        assert!(manager.status(7).is_none());
        assert!(manager.list().is_empty());
        assert!(!manager.forget(7));
        assert!(manager.subscribe(7).is_err());
    }
}
