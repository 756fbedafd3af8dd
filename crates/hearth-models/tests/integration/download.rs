//! Downloads over real HTTP from a scripted server on 127.0.0.1, serving the real SmolLM2 model.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hearth_models::{
    DownloadConfig, DownloadControl, DownloadOutcome, DownloadRequest, HubRepo, ModelLibrary,
    ModelSource, ModelsError, NoProgress, PullOutcome, PullRequest, Sha256Digest,
};

use crate::support::*;

mod hub;
mod partials;

const REPO: &str = "test-org/SmolLM2-test";

fn resolve_path() -> String {
    format!("/{REPO}/resolve/main/{SMOLLM2_FILE}")
}

fn catalog_pull() -> PullRequest {
    PullRequest::from_catalog(&test_catalog(REPO, true), "smollm2-test", None).unwrap()
}

fn installed(outcome: PullOutcome) -> hearth_models::InstalledModel {
    match outcome {
        PullOutcome::Installed(installed) => installed,
        other => panic!("expected Installed, got {other:?}"),
    }
}

fn assert_nothing_installed(library: &ModelLibrary) {
    let listing = library.list().unwrap();
    assert!(listing.installed.is_empty(), "{listing:?}");
    assert!(listing.broken.is_empty(), "{listing:?}");
}

#[test]
fn download_cut_ten_times_at_seeded_offsets_resumes_and_verifies() {
    const CUTS: usize = 10;
    let model = smollm2_bytes();
    let mut random = SeededRandom::new(0x4845_4152_5448);
    // Cut points spread over the file: each connection ends somewhere inside the rest.
    let mut cut_offsets = Vec::new();
    let mut position = 0u64;
    for remaining_cuts in (1..=CUTS as u64).rev() {
        let room = (SMOLLM2_SIZE_BYTES - position) / (remaining_cuts + 1);
        position += random.in_range(1, room.max(2));
        cut_offsets.push(position);
    }
    let cuts = cut_offsets.clone();
    let served = Arc::clone(&model);
    let server = TestServer::start(move |request, _| {
        if request.path == resolve_path() {
            // The hub answers resolve URLs with a redirect to its CDN.
            return Reply::Redirect {
                location: "/cdn/blob".to_string(),
                linked: None,
            };
        }
        let start = request.range_start.unwrap_or(0);
        let mut reply = FileReply::new(Arc::clone(&served));
        if let Some(cut) = cuts.iter().find(|cut| **cut > start) {
            reply.cut_after = Some(cut - start);
        }
        Reply::File(reply)
    });
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let progress = RecordingProgress::default();
    let outcome = library
        .pull(
            &hub_client(&server, fast_config()),
            &catalog_pull(),
            &DownloadControl::new(),
            &progress,
        )
        .unwrap();
    let installed = installed(outcome);
    assert_eq!(installed.manifest.sha256, smollm2_digest());
    assert_eq!(installed.manifest.size_bytes, SMOLLM2_SIZE_BYTES);
    assert_eq!(
        Sha256Digest::from_hex(SMOLLM2_SHA256).unwrap(),
        hearth_models::sha256_of_file(&installed.model_path, |_| {}).unwrap()
    );

    let blob_requests = server.requests_for("GET", "/cdn/blob");
    assert_eq!(
        blob_requests.len(),
        CUTS + 1,
        "one request per cut, plus the last"
    );
    let range_starts: Vec<u64> = blob_requests
        .iter()
        .map(|request| request.range_start.unwrap_or(0))
        .collect();
    let mut expected_starts = vec![0];
    expected_starts.extend(&cut_offsets);
    assert_eq!(
        range_starts, expected_starts,
        "each retry resumes where the cut was"
    );
    assert_eq!(progress.retries.lock().unwrap().len(), CUTS);

    let updates = progress.updates.lock().unwrap();
    assert_eq!(updates.last().unwrap().bytes_done, SMOLLM2_SIZE_BYTES);
    assert!(updates
        .windows(2)
        .all(|pair| pair[0].bytes_done <= pair[1].bytes_done));
    assert!(updates.iter().any(|update| update.bytes_per_second > 0.0));
    assert!(updates.iter().any(|update| update.eta.is_some()));

    let model_directory = library.model_directory(&installed.manifest.id);
    assert!(files_ending_with(&model_directory, ".partial").is_empty());
    assert_eq!(library.list().unwrap().installed.len(), 1);
}

#[test]
fn wrong_digest_fails_and_installs_nothing() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| Reply::File(FileReply::new(Arc::clone(&model))));
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let mut request = catalog_pull();
    let wrong = Sha256Digest::from_hex(&"ab".repeat(32)).unwrap();
    request.expected_sha256 = Some(wrong);

    let error = library
        .pull(
            &hub_client(&server, fast_config()),
            &request,
            &DownloadControl::new(),
            &NoProgress,
        )
        .unwrap_err();
    let ModelsError::DigestMismatch {
        expected, actual, ..
    } = &error
    else {
        panic!("expected a digest mismatch, got {error}");
    };
    assert_eq!(expected, &wrong.to_hex());
    assert_eq!(actual, SMOLLM2_SHA256);
    assert!(error.to_string().contains(SMOLLM2_SHA256), "{error}");
    assert_nothing_installed(&library);
    assert!(library.partial_downloads().unwrap().is_empty());
    let model_directory = library.model_directory(&request.model_id);
    assert!(files_ending_with(&model_directory, ".gguf").is_empty());
}

#[test]
fn server_that_ignores_range_still_yields_a_correct_file() {
    let model = smollm2_bytes();
    let served = Arc::clone(&model);
    let server = TestServer::start(move |_, _| {
        let mut reply = FileReply::new(Arc::clone(&served));
        reply.honor_range = false;
        Reply::File(reply)
    });
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let request = catalog_pull();
    // An earlier attempt left 30 MB behind.
    let model_directory = library.model_directory(&request.model_id);
    std::fs::create_dir_all(&model_directory).unwrap();
    let partial_bytes = 30 * 1024 * 1024;
    std::fs::write(
        model_directory.join(format!("{SMOLLM2_FILE}.partial")),
        &model[..partial_bytes],
    )
    .unwrap();

    let installed = installed(
        library
            .pull(
                &hub_client(&server, fast_config()),
                &request,
                &DownloadControl::new(),
                &NoProgress,
            )
            .unwrap(),
    );
    assert_eq!(installed.manifest.sha256, smollm2_digest());
    let requests = server.requests_for("GET", &resolve_path());
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].range_start, Some(partial_bytes as u64));
    assert_eq!(
        std::fs::metadata(&installed.model_path).unwrap().len(),
        SMOLLM2_SIZE_BYTES
    );
}

#[test]
fn html_pages_are_rejected_with_a_clear_error() {
    let html = "<!DOCTYPE html><html><body>Access to this model is restricted</body></html>";
    for declared_as_html in [true, false] {
        let server = TestServer::start(move |_, _| Reply::Body {
            content_type: if declared_as_html {
                "text/html; charset=utf-8"
            } else {
                "application/octet-stream"
            },
            body: html.to_string(),
        });
        let home = tempfile::tempdir().unwrap();
        let library = ModelLibrary::new(home.path().join("models"));
        let request =
            PullRequest::from_hub(HubRepo::parse(REPO).unwrap(), None, SMOLLM2_FILE, None).unwrap();
        let error = library
            .pull(
                &hub_client(&server, fast_config()),
                &request,
                &DownloadControl::new(),
                &NoProgress,
            )
            .unwrap_err();
        assert!(
            matches!(error, ModelsError::NotGguf { .. }),
            "declared as HTML: {declared_as_html}: {error}"
        );
        assert!(error.to_string().contains("HTML page"), "{error}");
        assert_nothing_installed(&library);
        assert!(library.partial_downloads().unwrap().is_empty());
    }
}

#[test]
fn redirect_to_plain_http_elsewhere_is_refused() {
    let server = TestServer::start(|_, _| Reply::Redirect {
        location: "http://models.example.invalid/SmolLM2.gguf".to_string(),
        linked: None,
    });
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let error = library
        .pull(
            &hub_client(&server, fast_config()),
            &catalog_pull(),
            &DownloadControl::new(),
            &NoProgress,
        )
        .unwrap_err();
    let ModelsError::InsecureRedirect { from, to } = &error else {
        panic!("expected an insecure redirect error, got {error}");
    };
    assert!(from.ends_with(&resolve_path()), "{from}");
    assert_eq!(to, "http://models.example.invalid/SmolLM2.gguf");
    assert!(error.to_string().contains("only https"), "{error}");
    assert_eq!(
        server.requests().len(),
        1,
        "the refused URL is never requested"
    );
    assert_nothing_installed(&library);
}

#[test]
fn stalled_transfer_is_retried_then_fails_clearly() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, index| {
        let mut reply = FileReply::new(Arc::clone(&model));
        // The first answer stalls after a megabyte, the next one before its first byte: an
        // attempt that made progress resets the count of failures, one that did not adds up.
        reply.stall_after = Some(if index == 0 { 1024 * 1024 } else { 0 });
        // Long enough to trip the stall timeout, short enough to end by itself.
        reply.stall_for = Duration::from_secs(3);
        Reply::File(reply)
    });
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let config = DownloadConfig {
        stall_timeout: Duration::from_millis(300),
        max_attempts: 2,
        ..fast_config()
    };
    let started = Instant::now();
    let error = library
        .pull(
            &hub_client(&server, config),
            &catalog_pull(),
            &DownloadControl::new(),
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the stall timeout did not trip: {:?}",
        started.elapsed()
    );
    let ModelsError::RetriesExhausted { last_error, .. } = &error else {
        panic!("expected retries to run out, got {error}");
    };
    assert!(
        matches!(**last_error, ModelsError::Stalled { .. }),
        "{last_error}"
    );
    assert!(error.to_string().contains("stalled"), "{error}");
    assert!(error.to_string().contains("0.3 s"), "{error}");
    // The second attempt resumed after the first one's megabyte.
    let starts: Vec<Option<u64>> = server
        .requests()
        .iter()
        .map(|request| request.range_start)
        .collect();
    assert_eq!(starts, [None, Some(1024 * 1024)]);
    // What arrived is kept for the next pull, but nothing is installed.
    assert_nothing_installed(&library);
    assert_eq!(library.partial_downloads().unwrap().len(), 1);
}

#[test]
fn stall_then_recovery_completes() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, index| {
        let mut reply = FileReply::new(Arc::clone(&model));
        if index == 0 {
            reply.stall_after = Some(512 * 1024);
            reply.stall_for = Duration::from_secs(2);
        }
        Reply::File(reply)
    });
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let config = DownloadConfig {
        stall_timeout: Duration::from_millis(300),
        ..fast_config()
    };
    let installed = installed(
        library
            .pull(
                &hub_client(&server, config),
                &catalog_pull(),
                &DownloadControl::new(),
                &NoProgress,
            )
            .unwrap(),
    );
    assert_eq!(installed.manifest.sha256, smollm2_digest());
}

#[test]
fn size_mismatch_is_a_clear_error() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| Reply::File(FileReply::new(Arc::clone(&model))));
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let mut request = catalog_pull();
    let wrong_size = SMOLLM2_SIZE_BYTES + 1000;
    request.expected_size_bytes = Some(wrong_size);
    let error = library
        .pull(
            &hub_client(&server, fast_config()),
            &request,
            &DownloadControl::new(),
            &NoProgress,
        )
        .unwrap_err();
    let ModelsError::SizeMismatch {
        expected, actual, ..
    } = &error
    else {
        panic!("expected a size mismatch, got {error}");
    };
    assert_eq!((*expected, *actual), (wrong_size, SMOLLM2_SIZE_BYTES));
    let message = error.to_string();
    assert!(message.contains(&wrong_size.to_string()), "{message}");
    assert!(
        message.contains(&SMOLLM2_SIZE_BYTES.to_string()),
        "{message}"
    );
    assert_nothing_installed(&library);
    assert!(library.partial_downloads().unwrap().is_empty());
}

#[test]
fn hub_size_that_disagrees_with_the_catalog_is_refused_before_downloading() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| {
        let mut reply = FileReply::new(Arc::clone(&model));
        reply.linked_sha256 = Some(SMOLLM2_SHA256.to_string());
        Reply::File(reply)
    });
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let mut request = catalog_pull();
    request.expected_sha256 = None;
    request.expected_size_bytes = Some(12345);
    let error = library
        .pull(
            &hub_client(&server, fast_config()),
            &request,
            &DownloadControl::new(),
            &NoProgress,
        )
        .unwrap_err();
    assert!(matches!(error, ModelsError::SizeMismatch { .. }), "{error}");
    assert!(error.to_string().contains("hub's size"), "{error}");
    assert!(server.requests_for("GET", &resolve_path()).is_empty());
}
