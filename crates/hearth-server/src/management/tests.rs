//! The management routes driven without a socket: listing, deleting, import validation,
//! unknown downloads, and 503 without a manager. No download reaches a network here.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use hearth_models::{DownloadConfig, DownloadManager, HubClient, ModelLibrary};
use serde_json::{json, Value};

use crate::test_support::{loopback_state, request, send_json as send};
use crate::AppState;

fn state(models_directory: Option<&std::path::Path>) -> AppState {
    let downloads = models_directory.map(|directory| {
        // Port 9 on loopback: nothing in these tests ever downloads.
        let hub = HubClient::new("http://127.0.0.1:9", DownloadConfig::default()).unwrap();
        Arc::new(DownloadManager::new(ModelLibrary::new(directory), hub))
    });
    AppState {
        downloads,
        ..loopback_state(Vec::new(), Vec::new(), &[])
    }
}

fn assert_error(body: &Value, code: &str, home: &std::path::Path) {
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.is_empty());
    assert!(
        !message.contains(home.to_str().unwrap()) && !message.contains("/tmp"),
        "a path leaked: {message}"
    );
}

#[tokio::test]
async fn without_a_manager_every_route_answers_503() {
    let state = state(None);
    for (method, path) in [
        (Method::GET, "/api/models"),
        (Method::DELETE, "/api/models/x"),
        (Method::GET, "/api/downloads"),
        (Method::GET, "/api/downloads/0"),
        (Method::POST, "/api/downloads/0/pause"),
    ] {
        let (status, body) = send(&state, request(method, path, None)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["error"]["code"], "model_management_unavailable");
    }
}

#[tokio::test]
async fn an_empty_library_lists_the_catalog_as_not_installed_and_broken_models_without_paths() {
    let home = tempfile::tempdir().unwrap();
    let broken = home.path().join("broken-one");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("manifest.json"), "{ not json").unwrap();
    let state = state(Some(home.path()));
    let (status, body) = send(&state, request(Method::GET, "/api/models", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["models"], json!([]));
    assert_eq!(body["broken"][0]["id"], "broken-one", "{body}");
    assert!(!body.to_string().contains(home.path().to_str().unwrap()));
    let catalog = body["catalog"].as_array().unwrap();
    let smollm2 = catalog
        .iter()
        .find(|entry| entry["id"] == "smollm2-135m-instruct")
        .expect("the catalog lists SmolLM2");
    assert_eq!(smollm2["installed"], false);
    assert!(smollm2["files"].as_array().is_some_and(|f| !f.is_empty()));
}

#[tokio::test]
async fn deleting_unknown_or_invalid_models_is_404() {
    let home = tempfile::tempdir().unwrap();
    let state = state(Some(home.path()));
    for path in [
        "/api/models/not-installed",
        "/api/models/..",
        "/api/models/a%2Fb",
    ] {
        let (status, body) = send(&state, request(Method::DELETE, path, None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_error(&body, "model_not_found", home.path());
    }
}

#[tokio::test]
async fn imports_are_validated_without_echoing_paths() {
    let home = tempfile::tempdir().unwrap();
    let state = state(Some(home.path()));
    let not_gguf = home.path().join("notes.gguf");
    std::fs::write(&not_gguf, b"this is not a model").unwrap();
    let missing = home.path().join("missing.gguf");
    let cases = [
        (json!({}), "path"),
        (json!({"path": ""}), "path"),
        (json!({"path": "relative/model.gguf"}), "path"),
        (json!({"path": not_gguf, "in_place": "yes"}), "in_place"),
        (json!({"path": not_gguf, "id": "../escape"}), "id"),
        (json!({"path": not_gguf, "id": 7}), "id"),
        (json!({"path": missing}), "path"),
        (json!({"path": home.path()}), "path"),
        (json!({"path": not_gguf, "in_place": true}), "path"),
    ];
    for (body, param) in cases {
        let (status, answer) = send(
            &state,
            request(Method::POST, "/api/models/import", Some(body.clone())),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["param"], param, "{body}: {answer}");
        assert_error(&answer, "invalid_value", home.path());
    }
    // A missing path, a folder and a file that is not GGUF get the same answer, which tells
    // nothing of the path or of the file's first bytes.
    let mut messages = Vec::new();
    for path in [&missing, &home.path().to_path_buf(), &not_gguf] {
        let (_, answer) = send(
            &state,
            request(
                Method::POST,
                "/api/models/import",
                Some(json!({"path": path})),
            ),
        )
        .await;
        messages.push(answer["error"]["message"].clone());
    }
    assert!(
        messages.iter().all(|message| *message == messages[0]),
        "{messages:?}"
    );
    assert!(!messages[0].to_string().contains("this is not"));
    let (_, listing) = send(&state, request(Method::GET, "/api/models", None)).await;
    assert_eq!(listing["models"], json!([]));
}

#[tokio::test]
async fn unknown_downloads_are_404_and_bad_targets_are_400() {
    let home = tempfile::tempdir().unwrap();
    let state = state(Some(home.path()));
    for (method, path) in [
        (Method::GET, "/api/downloads/0"),
        (Method::GET, "/api/downloads/abc"),
        (Method::POST, "/api/downloads/3/pause"),
        (Method::POST, "/api/downloads/3/resume"),
        (Method::POST, "/api/downloads/3/cancel"),
        (Method::GET, "/api/downloads/3/events"),
    ] {
        let (status, body) = send(&state, request(method, path, None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_error(&body, "download_not_found", home.path());
    }
    let (status, body) = send(&state, request(Method::GET, "/api/downloads", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"downloads": []}));
    for target in [
        json!({}),
        json!({"model": 3}),
        json!({"model": "no-such-model"}),
        json!({"model": "smollm2-135m-instruct:Q9_9"}),
        json!({"model": "someone/some-repo"}),
        json!({"model": "someone/some-repo:Q4_K_M"}),
        json!({"model": "not a repo/x:y.gguf"}),
        json!({"model": "smollm2-135m-instruct:"}),
    ] {
        let (status, body) = send(
            &state,
            request(Method::POST, "/api/downloads", Some(target.clone())),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{target}: {body}");
        assert_eq!(body["error"]["param"], "model", "{target}: {body}");
    }
    let (_, body) = send(&state, request(Method::GET, "/api/downloads", None)).await;
    assert_eq!(body, json!({"downloads": []}));
}

/// A probe report of an 8 GB laptop without a GPU (the planner's fixture).
pub(crate) fn laptop_report() -> hearth_probe::ProbeReport {
    hearth_probe::ProbeReport {
        probe_version: hearth_probe::PROBE_VERSION,
        profile: hearth_probe::profile::fixtures::laptop_8gb_no_gpu(),
        adapters: Vec::new(),
        llama_devices: None,
        backends: None,
        cpu_bandwidth_from_cache: true,
        cache_path: std::path::PathBuf::new(),
    }
}

#[tokio::test]
async fn models_and_catalog_variants_carry_fit_badges_and_a_recommendation() {
    let home = tempfile::tempdir().unwrap();
    let state = AppState {
        machine: Arc::new(crate::system::MachineInfo::with_report(laptop_report())),
        ..state(Some(home.path()))
    };
    let (status, imported) = send(
        &state,
        request(
            Method::POST,
            "/api/models/import",
            Some(json!({"path": hearth_testkit::smollm2(), "in_place": true})),
        ),
    )
    .await;
    assert!(status.is_success(), "{imported}");
    let (status, body) = send(&state, request(Method::GET, "/api/models", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fit = &body["models"][0]["fit"];
    assert_eq!(fit["badge"], "cpu", "{body}");
    assert_eq!(fit["estimated"], false, "read from the file's own header");
    assert!(fit["predicted_decode_tokens_per_s"].as_f64().unwrap() > 1.0);
    assert!(fit["memory_bytes"].as_u64().unwrap() > 90_000_000);
    assert_eq!(fit["n_ctx"], 4096);

    for entry in body["catalog"].as_array().unwrap() {
        for file in entry["files"].as_array().unwrap() {
            let badge = file["fit"]["badge"].as_str().unwrap_or("none");
            assert!(
                ["gpu", "partial", "cpu", "too_large"].contains(&badge),
                "{entry}"
            );
            assert_ne!(badge, "gpu", "the laptop has no GPU: {entry}");
        }
    }
    let recommendation = &body["recommendation"];
    assert!(
        recommendation["model"].as_str().unwrap().contains(':'),
        "{recommendation}"
    );
    assert_eq!(recommendation["fit"]["badge"], "cpu");
    assert!(recommendation["reason"].as_str().unwrap().len() > 20);
    assert!(!body.to_string().contains(home.path().to_str().unwrap()));
}

#[tokio::test]
async fn without_a_probe_the_listing_has_no_fits() {
    let home = tempfile::tempdir().unwrap();
    let state = state(Some(home.path()));
    let (_, body) = send(&state, request(Method::GET, "/api/models", None)).await;
    assert_eq!(body["recommendation"], Value::Null);
    assert_eq!(body["catalog"][0]["fit"], Value::Null);
}
