//! Talking to the hub: metadata from HEAD and the API, missing and gated files, a file
//! already present, the token sent to the hub's host only, and a broken install repaired.

use super::*;

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
