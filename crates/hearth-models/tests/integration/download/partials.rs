//! What a pull finds or leaves beside it: a partial from a killed process (resumed, never
//! listed) or one that is not GGUF (discarded), a second pull of the same model at once,
//! pause and cancel, and the free-space check.

use super::*;

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
