//! Tests of the model manager: ids from file names, unknown models, loads in progress and
//! loads that cannot start a worker.

use std::path::Path;
use std::time::SystemTime;

use super::*;

fn manager(models: Vec<ServableModel>) -> Arc<ModelManager> {
    ModelManager::new(
        ModelManagerConfig {
            models,
            library: None,
            worker_command: crate::test_support::missing_worker(),
            load_params: LoadParams::default(),
            idle_unload: Some(Duration::from_secs(1)),
            load_wait: Duration::from_millis(50),
            max_loaded_models: 1,
            catalog_drafts: true,
            providers: None,
        },
        Arc::new(Metrics::default()),
    )
}

#[test]
fn ids_come_from_file_names() {
    let model = ServableModel::from_path(Path::new("/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert_eq!(model.id, "smollm2-135m-instruct.q4_1");
}

#[tokio::test]
async fn an_unknown_model_is_404() {
    let error = manager(Vec::new()).acquire("nope").await.unwrap_err();
    assert_eq!(error.status, axum::http::StatusCode::NOT_FOUND);
    assert_eq!(error.code, Some("model_not_found"));
}

#[tokio::test]
async fn a_model_still_loading_is_503_with_retry_after() {
    let manager = manager(Vec::new());
    let _sender = manager.insert_never_loading("slow");
    let error = manager.acquire("slow").await.unwrap_err();
    assert_eq!(error.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error.retry_after_secs, Some(LOADING_RETRY_AFTER_SECS));
    assert_eq!(manager.loading_count(), 1);
}

#[tokio::test]
async fn a_load_that_cannot_start_a_worker_fails_without_a_path() {
    let manager = manager(vec![ServableModel {
        id: "m".into(),
        path: "/home/someone/m.gguf".into(),
        created: 0,
    }]);
    let error = manager.acquire("m").await.unwrap_err();
    assert_eq!(error.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!error.message.contains('/'), "{}", error.message);
    assert_eq!(manager.loading_count(), 0, "a failed load leaves no slot");
}

/// An in-place model whose file changed since its import (here its modification time, the
/// size unchanged) is refused before any load, with a message that says so and no path.
#[tokio::test]
async fn an_in_place_model_changed_since_import_is_refused_before_loading() {
    use hearth_gguf::{GgmlType, GgufBuilder, MetadataValue};
    use hearth_models::{ImportMode, ImportRequest, NoProgress};
    let home = tempfile::tempdir().unwrap();
    let source = home.path().join("elsewhere.gguf");
    let bytes = GgufBuilder::new()
        .metadata(
            "general.architecture",
            MetadataValue::String("llama".into()),
        )
        .tensor("token_embd.weight", GgmlType::F32, &[16, 16])
        .build();
    std::fs::write(&source, bytes).unwrap();
    let library = ModelLibrary::new(home.path().join("models"));
    let mut request = ImportRequest::file(&source, ImportMode::InPlace);
    request.model_id = Some(ModelId::new("outside").unwrap());
    library.import(&request, &NoProgress).unwrap();
    let manager = ModelManager::new(
        ModelManagerConfig {
            models: Vec::new(),
            library: Some(library),
            worker_command: crate::test_support::missing_worker(),
            load_params: LoadParams::default(),
            idle_unload: None,
            load_wait: Duration::from_millis(50),
            max_loaded_models: 1,
            catalog_drafts: true,
            providers: None,
        },
        Arc::new(Metrics::default()),
    );
    assert!(manager.resolve("outside").is_some());

    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&source)
        .unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    drop(file);
    let error = manager.acquire("outside").await.unwrap_err();
    assert_eq!(error.status, axum::http::StatusCode::CONFLICT);
    assert_eq!(error.code, Some("model_file_changed"));
    assert!(error.message.contains("changed"), "{}", error.message);
    assert!(!error.message.contains('/'), "{}", error.message);
    assert_eq!(manager.loading_count(), 0, "nothing was loaded");
}
