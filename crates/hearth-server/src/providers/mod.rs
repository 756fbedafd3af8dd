//! Remote providers: other OpenAI-compatible servers (vLLM, llama.cpp's server, TGI, another
//! Hearth) whose models Hearth serves beside its own, so the UI, the history and the local API
//! stay the same when the tokens come from a GPU cluster.
//!
//! A remote model's id is `PROVIDER/MODEL` (local ids never contain `/`). [`ProviderRegistry`]
//! resolves such an id for [`crate::ModelManager::acquire`], which hands out a lease whose
//! generations run on the remote ([`client`]) and come back as the engine's own events; every
//! answering path then works unchanged, with Hearth's own TTFT/ITL figures. Model lists are
//! fetched with a short timeout and cached for [`MODEL_LIST_TTL`], so a remote that is down
//! never slows `/v1/models` for long. Keys stay in [`store`]'s private file: they are sent to
//! their provider only, and never shown, logged or stored in the history.

mod client;
mod routes;
mod secrets;
mod store;
mod wire;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_supervisor::{Generation, GenerationStream};

pub use client::{RemoteClient, RemoteTarget, RemoteTimeouts};
pub use routes::router;
#[cfg(test)]
pub(crate) use routes::ProviderView;
pub use secrets::SecretVault;
pub use store::{
    normalize_base_url, validate_provider_name, ProviderConfig, ProviderStore, ProviderStoreError,
    PROVIDERS_FILE_NAME, PROVIDER_KEYS_FILE_NAME,
};

/// How long a remote's model list is reused before it is asked again.
pub const MODEL_LIST_TTL: Duration = Duration::from_secs(30);
/// Remote generations' request ids count down from here, far from the engine workers' ids.
const FIRST_REMOTE_REQUEST_ID: u64 = 1 << 62;
/// The separator between a provider's name and its model's id.
pub const REMOTE_MODEL_SEPARATOR: char = '/';

/// A remote model as listed beside the local ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteListing {
    /// `PROVIDER/MODEL`.
    pub id: String,
    pub provider: String,
    pub created: u64,
}

/// What one provider's last model list said.
#[derive(Debug, Clone)]
struct CachedList {
    fetched_at: Instant,
    models: Result<Vec<RemoteListing>, String>,
}

/// The providers, their cached model lists, and the client that reaches them.
#[derive(Debug)]
pub struct ProviderRegistry {
    store: ProviderStore,
    client: RemoteClient,
    cache: Mutex<HashMap<String, CachedList>>,
    next_request_id: AtomicU64,
}

/// One provider as `/api/providers` shows it (never its key).
#[derive(Debug, Clone)]
pub struct ProviderStatus {
    pub config: ProviderConfig,
    /// Where its key is kept (`file`, `os-keychain`), `None` without one.
    pub key_storage: Option<String>,
    /// The models it listed, or why it could not be asked.
    pub models: Result<Vec<RemoteListing>, String>,
}

impl ProviderRegistry {
    pub fn new(data_dir: &Path, timeouts: RemoteTimeouts) -> Arc<Self> {
        Arc::new(Self {
            store: ProviderStore::new(data_dir),
            client: RemoteClient::new(timeouts),
            cache: Mutex::new(HashMap::new()),
            next_request_id: AtomicU64::new(FIRST_REMOTE_REQUEST_ID),
        })
    }

    pub fn store(&self) -> &ProviderStore {
        &self.store
    }

    /// The remote target of a model id `PROVIDER/MODEL`, when `PROVIDER` is configured.
    pub fn resolve(&self, model_id: &str) -> Option<RemoteTarget> {
        let (name, remote_model) = model_id.split_once(REMOTE_MODEL_SEPARATOR)?;
        if remote_model.is_empty() {
            return None;
        }
        let provider = self.store.get(name)?;
        Some(RemoteTarget {
            key: self.store.key(name),
            provider,
            remote_model: remote_model.to_string(),
        })
    }

    /// Starts a generation on a remote.
    pub fn generate(&self, target: RemoteTarget, generation: Generation) -> GenerationStream {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        self.client.generate(target, generation, request_id)
    }

    /// Forgets a provider's cached model list (after it is added or removed).
    pub fn forget(&self, name: &str) {
        self.cache_lock().remove(name);
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedList>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every provider with its models (fresh within [`MODEL_LIST_TTL`], else asked again, all
    /// providers at once, each within the list timeout).
    pub async fn statuses(self: &Arc<Self>) -> Vec<ProviderStatus> {
        let providers = self.store.list();
        let mut asks = Vec::new();
        for provider in &providers {
            let cached = self
                .cache_lock()
                .get(&provider.name)
                .filter(|cached| cached.fetched_at.elapsed() < MODEL_LIST_TTL)
                .cloned();
            let registry = self.clone();
            let provider = provider.clone();
            asks.push(tokio::spawn(async move {
                if let Some(cached) = cached {
                    return cached.models;
                }
                let name = provider.name.clone();
                let asker = registry.clone();
                let models = tokio::task::spawn_blocking(move || asker.ask_models(&provider))
                    .await
                    .unwrap_or_else(|_| Err("the model list could not be read".into()));
                registry.cache_lock().insert(
                    name,
                    CachedList {
                        fetched_at: Instant::now(),
                        models: models.clone(),
                    },
                );
                models
            }));
        }
        let mut statuses = Vec::new();
        for (provider, ask) in providers.into_iter().zip(asks) {
            let models = ask
                .await
                .unwrap_or_else(|_| Err("the model list could not be read".into()));
            statuses.push(ProviderStatus {
                key_storage: self.store.key_storage(&provider.name),
                config: provider,
                models,
            });
        }
        statuses
    }

    /// Every remote model that its provider listed.
    pub async fn remote_models(self: &Arc<Self>) -> Vec<RemoteListing> {
        self.statuses()
            .await
            .into_iter()
            .filter_map(|status| status.models.ok())
            .flatten()
            .collect()
    }

    fn ask_models(&self, provider: &ProviderConfig) -> Result<Vec<RemoteListing>, String> {
        let key = self.store.key(&provider.name);
        match self.client.list_models(provider, key.as_deref()) {
            Ok(models) => Ok(models
                .into_iter()
                .map(|model| RemoteListing {
                    id: format!("{}{REMOTE_MODEL_SEPARATOR}{}", provider.name, model.id),
                    provider: provider.name.clone(),
                    created: model.created.unwrap_or(0),
                })
                .collect()),
            Err(error) => {
                tracing::warn!(provider = %provider.name, message = %error.message, "cannot list a provider's models");
                Err(error.message)
            }
        }
    }
}

#[cfg(test)]
mod tests;
