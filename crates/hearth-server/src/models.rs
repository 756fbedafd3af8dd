//! Models by name: which models the server can serve, which are loaded, loading on demand and
//! unloading when idle.
//!
//! One [`Supervisor`] is one engine worker process with one model, so a loaded model is a
//! supervisor of its own. A request for a model that is not loaded starts its load in a task
//! of its own (a client that goes away does not abort it) and waits for it at most
//! `load_wait`; past that it gets 503 with `Retry-After`, never a hang. At most
//! `max_loaded_models` are loaded at once: a new one replaces the least recently used idle
//! one, and when all are busy the request gets 503 too. A [`ModelLease`] marks a model busy
//! for as long as a request uses it, so an idle unload never pulls a model from under a
//! running answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_models::{ModelId, ModelLibrary, ModelsError};
use hearth_protocol::{LoadParams, ModelInfo};
use hearth_supervisor::{Supervisor, WorkerCommand};
use tokio::sync::watch;

pub use keep_alive::KeepAlive;

use crate::error::{ApiError, LOADING_RETRY_AFTER_SECS};
use crate::metrics::Metrics;
use crate::providers::ProviderRegistry;

mod lease;
mod loading;
mod servable;
mod unloading;

use loading::{load_model, spawn_unload, with_catalog_draft};

pub use lease::ModelLease;
use servable::modified_unix_seconds;
pub use servable::{unix_now, ServableModel};

/// How often the idle reaper looks at most (shorter idle times are checked more often).
const MAX_IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How often the idle reaper looks at least.
const MIN_IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How long a shutdown waits for loads in progress to end (each then stops its worker).
const SHUTDOWN_LOAD_WAIT: Duration = Duration::from_secs(10);

/// How models are found and loaded.
#[derive(Debug, Clone)]
pub struct ModelManagerConfig {
    /// Models given by path (`hearth serve --model FILE`), served under their ids.
    pub models: Vec<ServableModel>,
    /// The installed models, served by library id.
    pub library: Option<ModelLibrary>,
    /// How to start an engine worker.
    pub worker_command: WorkerCommand,
    pub load_params: LoadParams,
    /// Unload a model unused for this long (`None`: never).
    pub idle_unload: Option<Duration>,
    /// How long a request waits for a model that is loading before it gets 503.
    pub load_wait: Duration,
    pub max_loaded_models: usize,
    /// Propose each library model's catalog draft to its worker (`hearth serve` without
    /// `--speculative`).
    pub catalog_drafts: bool,
    /// Remote providers, whose models (`PROVIDER/MODEL`) are served beside the local ones
    /// (`None`: none).
    pub providers: Option<Arc<ProviderRegistry>>,
}

/// Where a model is in its life, as `/health` and `/v1/models` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    Available,
    Loading,
    Loaded,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Available => "available",
            ModelState::Loading => "loading",
            ModelState::Loaded => "loaded",
        }
    }
}

/// A loaded model: its engine worker and what the worker said about it.
#[derive(Debug)]
pub struct LoadedModel {
    pub id: String,
    pub supervisor: Supervisor,
    pub info: ModelInfo,
    /// The draft model guessing for it: the catalog's draft id, or the file name of the
    /// server's `--draft-model`; `None` unless it speculates with a draft.
    pub draft_model: Option<String>,
    /// Requests using the model now.
    active_requests: AtomicUsize,
    last_used: Mutex<Instant>,
    /// How long it stays loaded unused, when a request said (Ollama's `keep_alive`).
    keep_alive: Mutex<Option<KeepAlive>>,
}

impl LoadedModel {
    fn is_idle(&self) -> bool {
        self.active_requests.load(Ordering::SeqCst) == 0
    }

    /// How long it may stay unused before it is unloaded (`None`: never).
    pub fn idle_limit(&self, server: Option<Duration>) -> Option<Duration> {
        let keep_alive = self.keep_alive.lock().ok().and_then(|slot| *slot);
        KeepAlive::idle_limit(server, keep_alive)
    }

    /// When it was last used.
    pub fn last_used(&self) -> Instant {
        self.last_used
            .lock()
            .map(|at| *at)
            .unwrap_or_else(|_| Instant::now())
    }
}

/// The outcome of a load, shared with every request waiting for it.
type LoadOutcome = Option<Result<(), ApiError>>;

#[derive(Debug)]
enum Slot {
    Loading { done: watch::Receiver<LoadOutcome> },
    Ready(Arc<LoadedModel>),
}

/// One entry of `/v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelListing {
    pub id: String,
    pub created: u64,
    pub state: ModelState,
}

/// The served models and their engine workers.
#[derive(Debug)]
pub struct ModelManager {
    config: ModelManagerConfig,
    slots: Mutex<HashMap<String, Slot>>,
    metrics: Arc<Metrics>,
    /// Set by [`ModelManager::shutdown_all`]: no model loads after it.
    closed: AtomicBool,
}

impl ModelManager {
    pub fn new(config: ModelManagerConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            config,
            slots: Mutex::new(HashMap::new()),
            metrics,
            closed: AtomicBool::new(false),
        })
    }

    /// The remote providers, when the server has them.
    pub fn providers(&self) -> Option<&Arc<ProviderRegistry>> {
        self.config.providers.as_ref()
    }

    /// The load parameters every model gets (context, parallel sequences, GPU layers).
    pub fn load_params(&self) -> &LoadParams {
        &self.config.load_params
    }

    fn shutting_down() -> ApiError {
        ApiError::unavailable(
            "shutting_down",
            "The server is shutting down.",
            LOADING_RETRY_AFTER_SECS,
        )
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding this lock cannot leave the map half-updated (every update is
        // one insert or remove), so a poisoned lock is still good to use.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `id` names a model this server can answer with: a local one, or a configured
    /// remote provider's (`PROVIDER/MODEL`, whatever the provider lists now).
    pub fn knows(&self, id: &str) -> bool {
        self.resolve(id).is_some()
            || self
                .config
                .providers
                .as_ref()
                .is_some_and(|providers| providers.resolve(id).is_some())
    }

    /// The server's own idle unload (`None`: never).
    pub fn idle_unload(&self) -> Option<Duration> {
        self.config.idle_unload
    }

    /// The model behind an id: one given by path first, then the library.
    pub fn resolve(&self, id: &str) -> Option<ServableModel> {
        self.resolve_for_load(id).ok()
    }

    /// [`Self::resolve`], saying why a model cannot be used: unknown (404), or an in-place
    /// model whose file changed since it was imported (409, checked by size and modification
    /// time before every load).
    fn resolve_for_load(&self, id: &str) -> Result<ServableModel, ApiError> {
        if let Some(model) = self.config.models.iter().find(|m| m.id == id) {
            return Ok(model.clone());
        }
        let not_found = || ApiError::model_not_found(id);
        let library = self.config.library.as_ref().ok_or_else(not_found)?;
        let model_id = ModelId::new(id).map_err(|_| not_found())?;
        match library.get(&model_id) {
            Ok(installed) => Ok(ServableModel {
                id: id.to_string(),
                created: modified_unix_seconds(&installed.model_path),
                path: installed.model_path,
            }),
            Err(ModelsError::ModelFileChanged { .. }) => Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                crate::error::TYPE_INVALID_REQUEST,
                format!(
                    "The model `{id}` was imported in place and its file changed since (its size or modification time differs), so it is not loaded. Import it again."
                ),
            )
            .with_param("model")
            .with_code("model_file_changed")),
            Err(_) => Err(not_found()),
        }
    }

    /// Every servable model, given ones first, then installed ones (sorted by id).
    pub fn list(&self) -> Vec<ModelListing> {
        let mut models: Vec<ServableModel> = self.config.models.clone();
        if let Some(library) = &self.config.library {
            match library.list() {
                Ok(listing) => {
                    for installed in listing.installed {
                        let id = installed.manifest.id.as_str().to_string();
                        if models.iter().all(|m| m.id != id) {
                            models.push(ServableModel {
                                id,
                                created: modified_unix_seconds(&installed.model_path),
                                path: installed.model_path,
                            });
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot list the model library"),
            }
        }
        let slots = self.slots();
        models
            .into_iter()
            .map(|model| ModelListing {
                state: match slots.get(&model.id) {
                    None => ModelState::Available,
                    Some(Slot::Loading { .. }) => ModelState::Loading,
                    Some(Slot::Ready(_)) => ModelState::Loaded,
                },
                id: model.id,
                created: model.created,
            })
            .collect()
    }

    /// The loaded models.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        self.slots()
            .values()
            .filter_map(|slot| match slot {
                Slot::Ready(model) => Some(model.clone()),
                Slot::Loading { .. } => None,
            })
            .collect()
    }

    /// How many models are loading now.
    pub fn loading_count(&self) -> usize {
        self.slots()
            .values()
            .filter(|slot| matches!(slot, Slot::Loading { .. }))
            .count()
    }

    /// A lease on model `id`, loading it first when needed (waiting at most `load_wait`).
    pub async fn acquire(self: &Arc<Self>, id: &str) -> Result<ModelLease, ApiError> {
        if let Some(providers) = &self.config.providers {
            if let Some(target) = providers.resolve(id) {
                return Ok(ModelLease::remote(id, target, providers.clone()));
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.load_wait;
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return Err(Self::shutting_down());
            }
            let mut done = {
                let mut slots = self.slots();
                match slots.get(id) {
                    Some(Slot::Ready(model)) => return Ok(ModelLease::local(model)),
                    Some(Slot::Loading { done }) => done.clone(),
                    None => {
                        let model = self.resolve_for_load(id)?;
                        self.make_room(&mut slots)?;
                        self.start_load_locked(&mut slots, model)
                    }
                }
            };
            // The timeout polls the wait once even past the deadline, so a finished load is
            // seen with `load_wait` = 0 too.
            let waited = tokio::time::timeout_at(deadline, done.wait_for(Option::is_some))
                .await
                .map(|outcome| outcome.map(|outcome| outcome.clone()));
            match waited {
                Ok(Ok(Some(Err(error)))) => return Err(error),
                // Loaded: the next turn of the loop takes the lease.
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    return Err(ApiError::internal(
                        "model_load_failed",
                        "The model's load was abandoned; retry the request.",
                    ))
                }
                Err(_) => {
                    return Err(ApiError::unavailable(
                        "model_loading",
                        format!("The model `{id}` is loading; retry shortly."),
                        LOADING_RETRY_AFTER_SECS,
                    ))
                }
            }
        }
    }

    /// Starts loading `model` unless it is loaded or loading (used to preload at startup).
    pub fn preload(self: &Arc<Self>, model: ServableModel) -> Result<(), ApiError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Self::shutting_down());
        }
        let mut slots = self.slots();
        if slots.contains_key(&model.id) {
            return Ok(());
        }
        self.make_room(&mut slots)?;
        self.start_load_locked(&mut slots, model);
        Ok(())
    }

    /// Unloads the least recently used idle model when the limit is reached; refuses (503)
    /// when every loaded model is busy.
    fn make_room(&self, slots: &mut HashMap<String, Slot>) -> Result<(), ApiError> {
        let max = self.config.max_loaded_models.max(1);
        while slots.len() >= max {
            let victim = slots
                .iter()
                .filter_map(|(id, slot)| match slot {
                    Slot::Ready(model) if model.is_idle() => Some((id.clone(), model.last_used())),
                    _ => None,
                })
                .min_by_key(|(_, last_used)| *last_used)
                .map(|(id, _)| id);
            let Some(victim) = victim else {
                return Err(ApiError::unavailable(
                    "models_busy",
                    format!(
                        "{max} model(s) are loaded and all are answering requests; retry shortly."
                    ),
                    LOADING_RETRY_AFTER_SECS,
                ));
            };
            if let Some(Slot::Ready(model)) = slots.remove(&victim) {
                tracing::info!(model = %victim, "unloading the least recently used model to load another");
                spawn_unload(model);
            }
        }
        Ok(())
    }

    fn start_load_locked(
        self: &Arc<Self>,
        slots: &mut HashMap<String, Slot>,
        model: ServableModel,
    ) -> watch::Receiver<LoadOutcome> {
        let (sender, receiver) = watch::channel(None);
        slots.insert(
            model.id.clone(),
            Slot::Loading {
                done: receiver.clone(),
            },
        );
        let manager = Arc::downgrade(self);
        let worker_command = self.config.worker_command.clone();
        let (load_params, catalog_draft_id) = with_catalog_draft(
            self.config.load_params.clone(),
            self.config
                .library
                .as_ref()
                .filter(|_| self.config.catalog_drafts),
            &model,
            self.metrics.draft_acceptance(),
        );
        tokio::spawn(async move {
            let outcome = load_model(
                manager,
                worker_command,
                load_params,
                catalog_draft_id,
                model,
            )
            .await;
            let _ = sender.send(Some(outcome));
        });
        receiver
    }

    /// Marks `id` as loading, with a load that never finishes (tests of the 503 path).
    #[cfg(test)]
    pub(crate) fn insert_never_loading(&self, id: &str) -> watch::Sender<LoadOutcome> {
        let (sender, receiver) = watch::channel(None);
        self.slots()
            .insert(id.to_string(), Slot::Loading { done: receiver });
        sender
    }
}

mod keep_alive;
#[cfg(test)]
mod tests;
