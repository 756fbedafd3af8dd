//! Loading one model into a worker of its own: the catalog's draft proposed beside it, the
//! load awaited, and the result put in its slot unless the manager shut down meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use hearth_models::ModelLibrary;
use hearth_protocol::LoadParams;
use hearth_supervisor::{Supervisor, WorkerCommand};

use super::{LoadedModel, ModelManager, ServableModel, Slot};
use crate::error::ApiError;

/// `params` with the installed draft model the catalog names for library model `model`
/// (speculative decoding), proposed to the worker, which loads it only when the planner
/// advises it (`LoadParams::draft_when_advised`, at the acceptance measured for the pair when
/// there is enough of it), and that draft's id; unless the server was told to speculate
/// otherwise.
pub(super) fn with_catalog_draft(
    params: LoadParams,
    library: Option<&ModelLibrary>,
    model: &ServableModel,
    acceptance: Option<&crate::draft_acceptance::DraftAcceptanceRecorder>,
) -> (LoadParams, Option<String>) {
    if params.speculative != hearth_protocol::SpeculativeMode::Off {
        return (params, None);
    }
    let draft = library.and_then(|library| {
        let catalog = hearth_models::Catalog::builtin().ok()?;
        let choice = hearth_models::catalog_draft(&catalog, library, &model.id)?;
        Some((choice.installed_path?, choice.id))
    });
    match draft {
        Some((path, draft_id)) => {
            let draft_acceptance = acceptance.and_then(|recorder| {
                use crate::draft_acceptance::file_name_of;
                recorder.acceptance_rate(&file_name_of(&model.path), &file_name_of(&path))
            });
            (
                LoadParams {
                    speculative: hearth_protocol::SpeculativeMode::Draft,
                    draft_model: Some(path),
                    draft_when_advised: true,
                    draft_acceptance,
                    ..params
                },
                Some(draft_id),
            )
        }
        None => (params, None),
    }
}

/// Loads one model in a worker of its own and records it as ready, or removes its slot.
pub(super) async fn load_model(
    manager: Weak<ModelManager>,
    worker_command: WorkerCommand,
    load_params: LoadParams,
    catalog_draft_id: Option<String>,
    model: ServableModel,
) -> Result<(), ApiError> {
    let supervisor = Supervisor::new(worker_command);
    let started = Instant::now();
    tracing::info!(model = %model.id, "loading model");
    let max_draft_tokens = load_params.max_draft_tokens;
    let result = supervisor.load(&model.path, load_params).await;
    let Some(manager) = manager
        .upgrade()
        .filter(|manager| !manager.closed.load(Ordering::SeqCst))
    else {
        supervisor.shutdown().await;
        return Err(ApiError::internal(
            "shutting_down",
            "The server is shutting down.",
        ));
    };
    match result {
        Ok(info) => {
            let load_seconds = started.elapsed().as_secs_f64();
            tracing::info!(model = %model.id, load_seconds, "model loaded");
            manager.metrics.record_model_load(&model.id, load_seconds);
            // The worker logged the planner's verdict on a proposed draft, once.
            if let Some(recorder) = manager.metrics.draft_acceptance() {
                let draft_file = info
                    .draft_model
                    .as_deref()
                    .filter(|_| info.speculative == hearth_protocol::SpeculativeMode::Draft);
                recorder.model_loaded(&model.id, &info.file_name, draft_file, max_draft_tokens);
            }
            let draft_model = (info.speculative == hearth_protocol::SpeculativeMode::Draft)
                .then(|| catalog_draft_id.or_else(|| info.draft_model.clone()))
                .flatten();
            let loaded = Arc::new(LoadedModel {
                id: model.id.clone(),
                supervisor,
                info,
                draft_model,
                active_requests: AtomicUsize::new(0),
                last_used: Mutex::new(Instant::now()),
                keep_alive: Mutex::new(None),
            });
            {
                // Checked under the lock `shutdown_all` drains with: a load never lands in a
                // manager that has shut down.
                let mut slots = manager.slots();
                if !manager.closed.load(Ordering::SeqCst) {
                    slots.insert(model.id, Slot::Ready(loaded));
                    return Ok(());
                }
            }
            loaded.supervisor.shutdown().await;
            Err(ApiError::internal(
                "shutting_down",
                "The server is shutting down.",
            ))
        }
        Err(error) => {
            tracing::warn!(model = %model.id, %error, "model load failed");
            manager.slots().remove(&model.id);
            supervisor.shutdown().await;
            Err(ApiError::from_supervisor(error, "model"))
        }
    }
}

pub(super) fn spawn_unload(model: Arc<LoadedModel>) {
    tokio::spawn(async move { model.supervisor.shutdown().await });
}
