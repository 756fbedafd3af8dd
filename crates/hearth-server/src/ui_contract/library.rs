//! The model library's side of the contract: an import, the listing with a broken folder,
//! an installed model from each source it may come from, and a download's status in each of
//! its states (a new state fails to compile until it has a sample).

use std::path::Path;

use axum::http::Method;
use hearth_models::{DownloadState, DownloadStatus, ImportOrigin, ModelSource};
use serde_json::json;

use super::{call, call_sorted, Samples};
use crate::management::{installed_json, status_json};
use crate::AppState;

/// The model library (an imported model, a broken folder, the catalog with fits) and a
/// download's status in each of its states.
pub(super) async fn model_samples(state: &AppState, home: &Path, samples: &mut Samples) {
    let broken = home.join("models").join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join(hearth_models::MANIFEST_FILE_NAME), "{").unwrap();
    let imported = call(
        state,
        Method::POST,
        "/api/models/import",
        Some(json!({"path": hearth_testkit::smollm2(), "in_place": true})),
    )
    .await;
    samples.add("InstalledModel", "POST /api/models/import", imported);
    let listing = call_sorted(state, Method::GET, "/api/models", None).await;
    assert!(
        !listing["broken"].as_array().unwrap().is_empty(),
        "{listing}"
    );
    samples.add("ModelsListing", "GET /api/models", listing);

    // The other sources an installed model may come from.
    let manager = state.downloads.clone().unwrap();
    let installed = manager.library().list().unwrap().installed.remove(0);
    let pulled = |source: ModelSource| {
        let mut model = installed.clone();
        model.manifest.source = source;
        installed_json(&model)
    };
    samples.add(
        "InstalledModel",
        "from the catalog",
        pulled(ModelSource::Catalog {
            catalog_id: "smollm2-135m-instruct".into(),
            quantization: "Q8_0".into(),
            repo: "owner/repo".into(),
            revision: "main".into(),
            file: "model.gguf".into(),
            url: "https://huggingface.co/owner/repo/resolve/main/model.gguf".into(),
            commit: Some("0123abcd".into()),
        }),
    );
    samples.add(
        "InstalledModel",
        "from a repository",
        pulled(ModelSource::Hub {
            repo: "owner/repo".into(),
            revision: "main".into(),
            file: "model.gguf".into(),
            url: "https://huggingface.co/owner/repo/resolve/main/model.gguf".into(),
            commit: None,
        }),
    );

    for origin in [
        ImportOrigin::File,
        ImportOrigin::Ollama {
            model_name: "llama3.2:1b".into(),
        },
        ImportOrigin::LmStudio {
            model_name: "publisher/repository".into(),
        },
        ImportOrigin::HuggingFaceCache {
            repo: "owner/repo".into(),
            revision: "0123abcd".into(),
        },
    ] {
        let what = format!("imported, {origin:?}");
        let source = ModelSource::Import {
            original_path: home.join("elsewhere/model.gguf"),
            origin,
        };
        samples.add("InstalledModel", what, pulled(source));
    }

    let states = [
        DownloadState::Starting,
        DownloadState::WaitingForOtherDownload,
        DownloadState::Downloading,
        DownloadState::Retrying {
            failed_attempts: 2,
            delay_seconds: 4.0,
            reason: "the connection was reset".into(),
        },
        DownloadState::Paused,
        DownloadState::Installed {
            model_path: home.join("models/m/model.gguf"),
        },
        DownloadState::Failed {
            error: "the checksum did not match".into(),
        },
        DownloadState::Cancelled,
    ];
    for download_state in states {
        // A new state fails to compile here until it has a sample above.
        match download_state {
            DownloadState::Starting
            | DownloadState::WaitingForOtherDownload
            | DownloadState::Downloading
            | DownloadState::Retrying { .. }
            | DownloadState::Paused
            | DownloadState::Installed { .. }
            | DownloadState::Failed { .. }
            | DownloadState::Cancelled => {}
        }
        let status = DownloadStatus {
            id: 3,
            model_id: "smollm2-135m-instruct".into(),
            repo: "owner/repo".into(),
            file: "model.gguf".into(),
            state: download_state,
            bytes_done: 1000,
            total_bytes: Some(4000),
            bytes_per_second: 500.0,
            eta_seconds: Some(6.0),
        };
        let what = format!("a download, {:?}", status.state);
        samples.add("DownloadStatus", what, status_json(&status));
    }
}
