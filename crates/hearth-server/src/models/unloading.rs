//! Unloading: models idle past their time (a reaper task that looks as often as the shortest
//! idle time needs), one model on request, and every model at shutdown (waiting a bounded
//! time for loads in flight).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::loading::spawn_unload;
use super::{
    LoadedModel, ModelManager, Slot, MAX_IDLE_CHECK_INTERVAL, MIN_IDLE_CHECK_INTERVAL,
    SHUTDOWN_LOAD_WAIT,
};
use crate::error::ApiError;

impl ModelManager {
    /// Unloads the models unused for longer than the idle time; returns their ids.
    pub fn unload_idle(&self, now: Instant) -> Vec<String> {
        let mut slots = self.slots();
        let expired: Vec<String> = slots
            .iter()
            .filter_map(|(id, slot)| match slot {
                Slot::Ready(model)
                    if model.is_idle()
                        && model
                            .idle_limit(self.config.idle_unload)
                            .is_some_and(|idle| {
                                now.saturating_duration_since(model.last_used()) >= idle
                            }) =>
                {
                    Some(id.clone())
                }
                _ => None,
            })
            .collect();
        for id in &expired {
            if let Some(Slot::Ready(model)) = slots.remove(id) {
                tracing::info!(model = %id, "unloading an idle model");
                spawn_unload(model);
            }
        }
        expired
    }

    /// Unloads `id` now, waiting until its worker has stopped (so its file can be deleted and
    /// its memory is back). Nothing to do when it is not loaded. A model that is loading or
    /// answering is refused (409) rather than pulled from under its requests.
    pub async fn unload(&self, id: &str) -> Result<(), ApiError> {
        let model = {
            let mut slots = self.slots();
            let busy = match slots.get(id) {
                None => return Ok(()),
                Some(Slot::Loading { .. }) => true,
                Some(Slot::Ready(model)) => !model.is_idle(),
            };
            if busy {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    crate::error::TYPE_INVALID_REQUEST,
                    "This model is loading or answering; stop its answers, then try again.",
                )
                .with_code("model_in_use"));
            }
            match slots.remove(id) {
                Some(Slot::Ready(model)) => model,
                _ => return Ok(()),
            }
        };
        tracing::info!(model = %id, "unloading a model on request");
        model.supervisor.shutdown().await;
        Ok(())
    }

    /// Runs [`ModelManager::unload_idle`] periodically for as long as the manager lives.
    /// It runs also without a server idle time: a request's `keep_alive` may set one.
    pub fn spawn_idle_reaper(self: &Arc<Self>) {
        let interval = self
            .config
            .idle_unload
            .map_or(MAX_IDLE_CHECK_INTERVAL, |idle| idle / 4)
            .clamp(MIN_IDLE_CHECK_INTERVAL, MAX_IDLE_CHECK_INTERVAL);
        let manager: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(manager) = manager.upgrade() else {
                    return;
                };
                manager.unload_idle(Instant::now());
            }
        });
    }

    /// Stops every engine worker (server shutdown): loaded models now, and models still
    /// loading as soon as their load ends (waiting at most [`SHUTDOWN_LOAD_WAIT`]). No model
    /// loads afterwards.
    pub async fn shutdown_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut loading = Vec::new();
        let models: Vec<Arc<LoadedModel>> = self
            .slots()
            .drain()
            .filter_map(|(_, slot)| match slot {
                Slot::Ready(model) => Some(model),
                Slot::Loading { done } => {
                    loading.push(done);
                    None
                }
            })
            .collect();
        for model in models {
            model.supervisor.shutdown().await;
        }
        // A load that ends after `closed` is set stops its own worker (see `load_model`).
        let loads_ended = futures_util::future::join_all(
            loading
                .iter_mut()
                .map(|done| async move { done.wait_for(Option::is_some).await.map(|_| ()) }),
        );
        if tokio::time::timeout(SHUTDOWN_LOAD_WAIT, loads_ended)
            .await
            .is_err()
        {
            tracing::warn!("a model was still loading at shutdown; its worker stops when it ends");
        }
    }
}
