//! Background downloads through `DownloadManager`: progress subscriptions, pause and resume,
//! cancel (running and paused), one download per model, and failures, against a scripted
//! server on 127.0.0.1 serving the real SmolLM2 model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hearth_models::{
    DownloadManager, DownloadState, DownloadStatus, ModelId, ModelLibrary, PullRequest,
};

use crate::support::*;

const REPO: &str = "test-org/SmolLM2-test";
/// Long enough for any of these transfers on a slow machine; a test that hits it is stuck.
const DEADLINE: Duration = Duration::from_secs(60);
/// A pause between 256 KiB chunks while the server is throttled: the transfer then lasts
/// several seconds, time enough to pause or cancel it in the middle.
const THROTTLED_CHUNK_DELAY: Duration = Duration::from_millis(15);
/// Bytes that must have arrived before a test pauses or cancels.
const BYTES_BEFORE_STOPPING: u64 = 4 * 1024 * 1024;

fn catalog_pull() -> PullRequest {
    PullRequest::from_catalog(&test_catalog(REPO, true), "smollm2-test", None).unwrap()
}

fn pull_as(model_id: &str) -> PullRequest {
    let mut request = catalog_pull();
    request.model_id = ModelId::new(model_id).unwrap();
    request
}

/// A server for the test model that is throttled while `throttled` is set.
fn throttled_server(throttled: &Arc<AtomicBool>) -> TestServer {
    let model = smollm2_bytes();
    let throttled = Arc::clone(throttled);
    TestServer::start(move |_, _| {
        let mut reply = FileReply::new(Arc::clone(&model));
        if throttled.load(Ordering::SeqCst) {
            reply.chunk_delay = Some(THROTTLED_CHUNK_DELAY);
        }
        Reply::File(reply)
    })
}

fn manager_for(server: &TestServer, home: &tempfile::TempDir) -> DownloadManager {
    DownloadManager::new(
        ModelLibrary::new(home.path().join("models")),
        hub_client(server, fast_config()),
    )
}

/// Polls until the download has `bytes` on disk.
fn wait_for_bytes(manager: &DownloadManager, id: u64, bytes: u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = manager.status(id).unwrap();
        if status.bytes_done >= bytes {
            return;
        }
        assert!(!status.state.is_stopped(), "it stopped early: {status:?}");
        assert!(Instant::now() < deadline, "no progress: {status:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every status a subscription delivers until it closes.
fn collect_until_closed(receiver: &mpsc::Receiver<DownloadStatus>) -> Vec<DownloadStatus> {
    let deadline = Instant::now() + DEADLINE;
    let mut statuses = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(status) => statuses.push(status),
            Err(mpsc::RecvTimeoutError::Disconnected) => return statuses,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no end: {statuses:?}"),
        }
    }
}

#[test]
fn a_background_pull_reports_progress_and_installs() {
    let throttled = Arc::new(AtomicBool::new(false));
    let server = throttled_server(&throttled);
    let home = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, &home);

    let id = manager.start(catalog_pull()).unwrap();
    let updates = manager.subscribe(id).unwrap();
    let statuses = collect_until_closed(&updates);

    let last = statuses.last().unwrap();
    let DownloadState::Installed { model_path } = &last.state else {
        panic!("expected installed: {statuses:?}");
    };
    assert_eq!(last.bytes_done, SMOLLM2_SIZE_BYTES);
    assert_eq!(last.model_id, "smollm2-test");
    assert_eq!(
        hearth_models::sha256_of_file(model_path, |_| {}).unwrap(),
        smollm2_digest()
    );
    // Byte counts never go backwards, and they stay within the file.
    for pair in statuses.windows(2) {
        assert!(pair[0].bytes_done <= pair[1].bytes_done, "{statuses:?}");
    }
    assert!(statuses
        .iter()
        .all(|status| status.total_bytes == Some(SMOLLM2_SIZE_BYTES)));

    assert_eq!(manager.list(), vec![last.clone()]);
    let installed = manager.library().list().unwrap().installed;
    assert_eq!(installed.len(), 1);
    // A subscription after the end gets the final status and closes at once.
    let late = collect_until_closed(&manager.subscribe(id).unwrap());
    assert_eq!(late, vec![last.clone()]);
    assert!(manager.forget(id));
    assert!(manager.list().is_empty());
}

#[test]
fn pause_keeps_the_partial_and_resume_finishes_from_it() {
    let throttled = Arc::new(AtomicBool::new(true));
    let server = throttled_server(&throttled);
    let home = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, &home);

    let id = manager.start(catalog_pull()).unwrap();
    wait_for_bytes(&manager, id, BYTES_BEFORE_STOPPING);
    manager.pause(id).unwrap();
    let paused = manager.wait(id, DEADLINE).unwrap();
    assert_eq!(paused.state, DownloadState::Paused);
    assert!((BYTES_BEFORE_STOPPING..SMOLLM2_SIZE_BYTES).contains(&paused.bytes_done));
    let library = manager.library();
    assert!(library.list().unwrap().installed.is_empty());
    let partials = library.partial_downloads().unwrap();
    assert_eq!(partials.len(), 1);
    assert_eq!(partials[0].bytes_done, paused.bytes_done);

    throttled.store(false, Ordering::SeqCst);
    manager.resume(id).unwrap();
    let finished = manager.wait(id, DEADLINE).unwrap();
    assert!(
        matches!(finished.state, DownloadState::Installed { .. }),
        "{finished:?}"
    );
    let resumed_from = server
        .requests()
        .iter()
        .filter_map(|request| request.range_start)
        .max();
    assert_eq!(resumed_from, Some(paused.bytes_done));
    assert_eq!(
        library.list().unwrap().installed[0].manifest.sha256,
        smollm2_digest()
    );
}

#[test]
fn cancel_deletes_the_partial_of_a_running_or_a_paused_download() {
    let throttled = Arc::new(AtomicBool::new(true));
    let server = throttled_server(&throttled);
    let home = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, &home);

    let running = manager.start(pull_as("running")).unwrap();
    wait_for_bytes(&manager, running, BYTES_BEFORE_STOPPING);
    manager.cancel(running).unwrap();
    assert_eq!(
        manager.wait(running, DEADLINE).unwrap().state,
        DownloadState::Cancelled
    );

    let paused = manager.start(pull_as("paused")).unwrap();
    wait_for_bytes(&manager, paused, BYTES_BEFORE_STOPPING);
    manager.pause(paused).unwrap();
    assert_eq!(
        manager.wait(paused, DEADLINE).unwrap().state,
        DownloadState::Paused
    );
    let updates = manager.subscribe(paused).unwrap();
    manager.cancel(paused).unwrap();
    let statuses = collect_until_closed(&updates);
    assert_eq!(statuses.last().unwrap().state, DownloadState::Cancelled);
    // Resuming a cancelled download does nothing.
    manager.resume(paused).unwrap();
    assert_eq!(
        manager.status(paused).unwrap().state,
        DownloadState::Cancelled
    );

    let library = manager.library();
    assert!(library.partial_downloads().unwrap().is_empty());
    assert!(library.list().unwrap().installed.is_empty());
}

#[test]
fn one_model_is_downloaded_once_however_often_it_is_started() {
    let throttled = Arc::new(AtomicBool::new(true));
    let server = throttled_server(&throttled);
    let home = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, &home);

    let first = manager.start(catalog_pull()).unwrap();
    let second = manager.start(catalog_pull()).unwrap();
    assert_eq!(first, second);
    let other = manager.start(pull_as("another-id")).unwrap();
    assert_ne!(first, other);
    assert_eq!(manager.list().len(), 2);

    throttled.store(false, Ordering::SeqCst);
    for id in [first, other] {
        let status = manager.wait(id, DEADLINE).unwrap();
        assert!(
            matches!(status.state, DownloadState::Installed { .. }),
            "{status:?}"
        );
    }
    // Installed: starting it again is a new download that finds it installed.
    let again = manager.start(catalog_pull()).unwrap();
    assert_ne!(again, first);
    let status = manager.wait(again, DEADLINE).unwrap();
    assert!(
        matches!(status.state, DownloadState::Installed { .. }),
        "{status:?}"
    );
}

#[test]
fn a_missing_file_fails_with_the_hubs_answer() {
    let server = TestServer::start(|_, _| Reply::Status(404));
    let home = tempfile::tempdir().unwrap();
    let manager = manager_for(&server, &home);
    let id = manager.start(pull_as("missing")).unwrap();
    let status = manager.wait(id, DEADLINE).unwrap();
    let DownloadState::Failed { error } = &status.state else {
        panic!("expected a failure: {status:?}");
    };
    assert!(error.contains("404"), "{error}");
    assert!(manager.library().list().unwrap().installed.is_empty());
}
