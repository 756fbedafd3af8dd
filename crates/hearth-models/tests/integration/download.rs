//! Downloads over real HTTP from a scripted server on 127.0.0.1, serving the real SmolLM2 model.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hearth_models::{
    DownloadConfig, DownloadControl, DownloadOutcome, DownloadRequest, HubRepo, ModelLibrary,
    ModelSource, ModelsError, NoProgress, PullOutcome, PullRequest, Sha256Digest,
};

use crate::support::*;

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

#[test]
fn partial_left_by_a_killed_process_is_resumed_and_never_listed() {
    let model = smollm2_bytes();
    let served = Arc::clone(&model);
    let server = TestServer::start(move |_, _| Reply::File(FileReply::new(Arc::clone(&served))));
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let request = catalog_pull();
    let model_directory = library.model_directory(&request.model_id);
    std::fs::create_dir_all(&model_directory).unwrap();
    let killed_at = SeededRandom::new(7).in_range(1, SMOLLM2_SIZE_BYTES - 1) as usize;
    std::fs::write(
        model_directory.join(format!("{SMOLLM2_FILE}.partial")),
        &model[..killed_at],
    )
    .unwrap();

    assert_nothing_installed(&library);
    assert!(matches!(
        library.get(&request.model_id),
        Err(ModelsError::ModelNotInstalled { .. })
    ));
    let partials = library.partial_downloads().unwrap();
    assert_eq!(partials.len(), 1);
    assert_eq!(partials[0].bytes_done, killed_at as u64);

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
    assert_eq!(requests[0].range_start, Some(killed_at as u64));
    assert!(library.partial_downloads().unwrap().is_empty());
    assert_eq!(library.list().unwrap().installed.len(), 1);
}

#[test]
fn partial_that_is_not_gguf_is_discarded_and_restarted() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| Reply::File(FileReply::new(Arc::clone(&model))));
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let request = catalog_pull();
    let model_directory = library.model_directory(&request.model_id);
    std::fs::create_dir_all(&model_directory).unwrap();
    std::fs::write(
        model_directory.join(format!("{SMOLLM2_FILE}.partial")),
        b"<html>an error page saved by some other tool</html>",
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
    assert_eq!(server.requests()[0].range_start, None);
}

#[test]
fn two_simultaneous_pulls_produce_one_correct_file() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| {
        let mut reply = FileReply::new(Arc::clone(&model));
        // Slow enough that the second pull starts while the first one is downloading.
        reply.chunk_delay = Some(Duration::from_millis(2));
        Reply::File(reply)
    });
    let home = tempfile::tempdir().unwrap();
    let models_directory = home.path().join("models");
    let client = hub_client(&server, fast_config());
    let barrier = Arc::new(Barrier::new(2));
    let outcomes: Vec<(PullOutcome, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let library = ModelLibrary::new(&models_directory);
                let client = &client;
                scope.spawn(move || {
                    let progress = RecordingProgress::default();
                    barrier.wait();
                    let outcome = library
                        .pull(client, &catalog_pull(), &DownloadControl::new(), &progress)
                        .unwrap();
                    (
                        outcome,
                        progress.waited_for_other_download.load(Ordering::SeqCst),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let installed_count = outcomes
        .iter()
        .filter(|(outcome, _)| matches!(outcome, PullOutcome::Installed(_)))
        .count();
    let already_count = outcomes
        .iter()
        .filter(|(outcome, _)| matches!(outcome, PullOutcome::AlreadyInstalled(_)))
        .count();
    assert_eq!((installed_count, already_count), (1, 1), "{outcomes:?}");
    assert!(
        outcomes.iter().any(|(_, waited)| *waited),
        "the second pull should have waited for the first"
    );
    assert_eq!(
        server.requests_for("GET", &resolve_path()).len(),
        1,
        "the file is downloaded once"
    );
    let library = ModelLibrary::new(&models_directory);
    let listing = library.list().unwrap();
    assert_eq!(listing.installed.len(), 1);
    let model_directory = library.model_directory(&listing.installed[0].manifest.id);
    assert_eq!(files_ending_with(&model_directory, ".gguf").len(), 1);
    assert!(files_ending_with(&model_directory, ".partial").is_empty());
    assert_eq!(
        hearth_models::sha256_of_file(&listing.installed[0].model_path, |_| {}).unwrap(),
        smollm2_digest()
    );
}

#[test]
fn pause_keeps_the_partial_and_the_next_pull_resumes() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| {
        let mut reply = FileReply::new(Arc::clone(&model));
        reply.chunk_delay = Some(Duration::from_millis(1));
        Reply::File(reply)
    });
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let client = hub_client(&server, fast_config());
    let control = DownloadControl::new();
    let progress = RecordingProgress::pausing(&control, 20 * 1024 * 1024, false);
    let outcome = library
        .pull(&client, &catalog_pull(), &control, &progress)
        .unwrap();
    let PullOutcome::Paused {
        bytes_done,
        total_bytes,
    } = outcome
    else {
        panic!("expected a pause, got {outcome:?}");
    };
    assert!((20 * 1024 * 1024..SMOLLM2_SIZE_BYTES).contains(&bytes_done));
    assert_eq!(total_bytes, Some(SMOLLM2_SIZE_BYTES));
    assert_nothing_installed(&library);
    let partials = library.partial_downloads().unwrap();
    assert_eq!(partials.len(), 1);
    assert_eq!(partials[0].bytes_done, bytes_done);

    control.resume();
    let installed = installed(
        library
            .pull(&client, &catalog_pull(), &control, &NoProgress)
            .unwrap(),
    );
    assert_eq!(installed.manifest.sha256, smollm2_digest());
    let requests = server.requests_for("GET", &resolve_path());
    assert_eq!(requests.last().unwrap().range_start, Some(bytes_done));
}

#[test]
fn cancel_deletes_the_partial() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| {
        let mut reply = FileReply::new(Arc::clone(&model));
        reply.chunk_delay = Some(Duration::from_millis(1));
        Reply::File(reply)
    });
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let control = DownloadControl::new();
    let progress = RecordingProgress::pausing(&control, 10 * 1024 * 1024, true);
    let outcome = library
        .pull(
            &hub_client(&server, fast_config()),
            &catalog_pull(),
            &control,
            &progress,
        )
        .unwrap();
    assert_eq!(outcome, PullOutcome::Cancelled);
    assert_nothing_installed(&library);
    assert!(library.partial_downloads().unwrap().is_empty());
}

#[test]
fn free_space_is_checked_before_downloading() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| Reply::File(FileReply::new(Arc::clone(&model))));
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let config = DownloadConfig {
        // No disk has this much to spare.
        free_space_margin_bytes: u64::MAX / 4,
        ..fast_config()
    };
    let error = library
        .pull(
            &hub_client(&server, config),
            &catalog_pull(),
            &DownloadControl::new(),
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        matches!(error, ModelsError::InsufficientSpace { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("free disk space"), "{error}");
    assert!(server.requests().is_empty(), "nothing is requested");
}

#[test]
fn hub_metadata_comes_from_head_and_the_api() {
    let model = smollm2_bytes();
    let listing = format!(
        r#"{{"id":"{REPO}","sha":"0123456789abcdef0123456789abcdef01234567","siblings":[
            {{"rfilename":"README.md","size":120}},
            {{"rfilename":"{SMOLLM2_FILE}","size":{SMOLLM2_SIZE_BYTES},
              "lfs":{{"sha256":"{SMOLLM2_SHA256}","size":{SMOLLM2_SIZE_BYTES},"pointerSize":134}}}},
            {{"rfilename":"Q8/other-Q8_0.gguf","size":5}}]}}"#
    );
    let server = TestServer::start(move |request, _| {
        if request.path.starts_with("/api/models/") {
            return Reply::Body {
                content_type: "application/json",
                body: listing.clone(),
            };
        }
        if request.path == resolve_path() {
            return Reply::Redirect {
                location: "/cdn/blob".to_string(),
                linked: Some((SMOLLM2_SIZE_BYTES, SMOLLM2_SHA256.to_string())),
            };
        }
        Reply::File(FileReply::new(Arc::clone(&model)))
    });
    let client = hub_client(&server, fast_config());
    let repo = HubRepo::parse(REPO).unwrap();

    let info = client
        .remote_file_info(&repo, "main", SMOLLM2_FILE)
        .unwrap();
    assert_eq!(info.size_bytes, Some(SMOLLM2_SIZE_BYTES));
    assert_eq!(info.sha256, Some(smollm2_digest()));
    assert_eq!(
        info.commit.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );

    let files = client.list_gguf_files(&repo, "main").unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].file, SMOLLM2_FILE);
    assert_eq!(files[0].sha256, Some(smollm2_digest()));
    assert_eq!(files[1].sha256, None);
    assert!(server
        .requests()
        .iter()
        .any(|request| request.path == format!("/api/models/{REPO}/revision/main?blobs=true")));

    // A pull by repository and file name takes size and digest from the hub.
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let request = PullRequest::from_hub(repo, None, SMOLLM2_FILE, None).unwrap();
    assert_eq!(request.model_id.as_str(), "smollm2-135m-instruct.q4_1");
    let installed = installed(
        library
            .pull(&client, &request, &DownloadControl::new(), &NoProgress)
            .unwrap(),
    );
    let ModelSource::Hub { commit, url, .. } = &installed.manifest.source else {
        panic!("unexpected source {:?}", installed.manifest.source);
    };
    assert_eq!(
        commit.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    assert!(url.ends_with(&resolve_path()), "{url}");
    assert_eq!(
        installed.manifest.summary.architecture.as_deref(),
        Some("llama")
    );
}

#[test]
fn missing_or_gated_files_fail_at_once_with_a_hint() {
    for (status, hint) in [(404, "no such repository"), (401, "HF_TOKEN")] {
        let server = TestServer::start(move |_, _| Reply::Status(status));
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
        assert!(error.to_string().contains(hint), "{error}");
        assert!(!error.is_retryable());
        assert_eq!(server.requests().len(), 1, "no retries for HTTP {status}");
    }
}

#[test]
fn download_file_reports_an_existing_file_as_present() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| Reply::File(FileReply::new(Arc::clone(&model))));
    let home = tempfile::tempdir().unwrap();
    let client = hub_client(&server, fast_config());
    let request = DownloadRequest {
        url: format!("{}/files/{SMOLLM2_FILE}", server.base_url()),
        destination: home.path().join("downloads").join(SMOLLM2_FILE),
        expected_sha256: Some(smollm2_digest()),
        expected_size_bytes: None,
    };
    let first = client
        .download_file(&request, &DownloadControl::new(), &NoProgress)
        .unwrap();
    assert!(matches!(first, DownloadOutcome::Completed(_)), "{first:?}");
    let second = client
        .download_file(&request, &DownloadControl::new(), &NoProgress)
        .unwrap();
    assert!(
        matches!(second, DownloadOutcome::AlreadyPresent(_)),
        "{second:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn the_hub_token_goes_to_the_hub_host_only() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |request, _| {
        if request.path == resolve_path() {
            // Same server, another host name: the token must not follow the redirect.
            let port = request
                .header("host")
                .and_then(|host| host.rsplit(':').next())
                .unwrap_or("0")
                .to_string();
            return Reply::Redirect {
                location: format!("http://localhost:{port}/cdn/blob"),
                linked: None,
            };
        }
        Reply::File(FileReply::new(Arc::clone(&model)))
    });
    let config = DownloadConfig {
        hub_token: Some("hf_secret".to_string()),
        ..fast_config()
    };
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    installed(
        library
            .pull(
                &hub_client(&server, config),
                &catalog_pull(),
                &DownloadControl::new(),
                &NoProgress,
            )
            .unwrap(),
    );
    let hub_request = &server.requests_for("GET", &resolve_path())[0];
    assert_eq!(
        hub_request.header("authorization"),
        Some("Bearer hf_secret")
    );
    assert_eq!(hub_request.header("accept-encoding"), Some("identity"));
    let cdn_request = &server.requests_for("GET", "/cdn/blob")[0];
    assert_eq!(cdn_request.header("authorization"), None);
}

#[test]
fn pulling_again_repairs_a_broken_install() {
    let model = smollm2_bytes();
    let server = TestServer::start(move |_, _| Reply::File(FileReply::new(Arc::clone(&model))));
    let home = tempfile::tempdir().unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let client = hub_client(&server, fast_config());
    let first = installed(
        library
            .pull(
                &client,
                &catalog_pull(),
                &DownloadControl::new(),
                &NoProgress,
            )
            .unwrap(),
    );
    std::fs::remove_file(&first.model_path).unwrap();
    let listing = library.list().unwrap();
    assert!(listing.installed.is_empty());
    assert_eq!(listing.broken.len(), 1);
    assert!(listing.broken[0].reason.contains("missing"), "{listing:?}");

    let repaired = installed(
        library
            .pull(
                &client,
                &catalog_pull(),
                &DownloadControl::new(),
                &NoProgress,
            )
            .unwrap(),
    );
    assert_eq!(repaired.model_path, first.model_path);
    assert_eq!(repaired.manifest.sha256, smollm2_digest());
    let listing = library.list().unwrap();
    assert_eq!((listing.installed.len(), listing.broken.len()), (1, 0));
    // A third pull finds it installed and downloads nothing.
    let again = library
        .pull(
            &client,
            &catalog_pull(),
            &DownloadControl::new(),
            &NoProgress,
        )
        .unwrap();
    assert!(
        matches!(again, PullOutcome::AlreadyInstalled(_)),
        "{again:?}"
    );
    assert_eq!(server.requests().len(), 2);
}
