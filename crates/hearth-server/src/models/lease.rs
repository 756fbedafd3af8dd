//! A request's hold on the model that answers it: a loaded local model, marked busy for as
//! long as the lease lives (so an idle unload never pulls it from under a running answer, and
//! dropping the lease marks it used now), or a remote provider's model, whose generations run
//! on the remote and come back as the same events.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use hearth_protocol::ModelInfo;
use hearth_supervisor::{Generation, GenerationStream, Supervisor, SupervisorError};

use super::{KeepAlive, LoadedModel};
use crate::providers::{ProviderRegistry, RemoteTarget};

#[derive(Debug)]
pub struct ModelLease {
    target: LeaseTarget,
}

#[derive(Debug)]
enum LeaseTarget {
    Local(Arc<LoadedModel>),
    Remote {
        id: String,
        target: RemoteTarget,
        registry: Arc<ProviderRegistry>,
    },
}

impl ModelLease {
    pub(super) fn local(model: &Arc<LoadedModel>) -> Self {
        model.active_requests.fetch_add(1, Ordering::SeqCst);
        Self {
            target: LeaseTarget::Local(model.clone()),
        }
    }

    pub(super) fn remote(id: &str, target: RemoteTarget, registry: Arc<ProviderRegistry>) -> Self {
        Self {
            target: LeaseTarget::Remote {
                id: id.to_string(),
                target,
                registry,
            },
        }
    }

    /// The model's id as clients name it (`PROVIDER/MODEL` for a remote one).
    pub fn id(&self) -> &str {
        match &self.target {
            LeaseTarget::Local(model) => &model.id,
            LeaseTarget::Remote { id, .. } => id,
        }
    }

    /// Starts a generation: in the model's engine worker, or on its remote provider.
    pub async fn generate(
        &self,
        generation: Generation,
    ) -> Result<GenerationStream, SupervisorError> {
        match &self.target {
            LeaseTarget::Local(model) => model.supervisor.generate(generation).await,
            LeaseTarget::Remote {
                target, registry, ..
            } => Ok(registry.generate(target.clone(), generation)),
        }
    }

    /// The engine worker of a local model (`None` for a remote one).
    pub fn local_supervisor(&self) -> Option<&Supervisor> {
        match &self.target {
            LeaseTarget::Local(model) => Some(&model.supervisor),
            LeaseTarget::Remote { .. } => None,
        }
    }

    /// What the worker reported when it loaded a local model (context, sequences, offload).
    pub fn info(&self) -> Option<&ModelInfo> {
        match &self.target {
            LeaseTarget::Local(model) => Some(&model.info),
            LeaseTarget::Remote { .. } => None,
        }
    }

    /// How long a local model stays loaded once unused, from now on (Ollama's `keep_alive`);
    /// a remote model's lifetime is its provider's business.
    pub fn set_keep_alive(&self, keep_alive: KeepAlive) {
        if let LeaseTarget::Local(model) = &self.target {
            if let Ok(mut slot) = model.keep_alive.lock() {
                *slot = Some(keep_alive);
            }
        }
    }

    /// The remote provider's name, for a remote model: its answers leave this machine.
    pub fn provider(&self) -> Option<&str> {
        match &self.target {
            LeaseTarget::Local(_) => None,
            LeaseTarget::Remote { target, .. } => Some(&target.provider.name),
        }
    }

    /// The remote provider's base URL, for a remote model.
    pub fn provider_url(&self) -> Option<&str> {
        match &self.target {
            LeaseTarget::Local(_) => None,
            LeaseTarget::Remote { target, .. } => Some(&target.provider.base_url),
        }
    }
}

impl Drop for ModelLease {
    fn drop(&mut self) {
        if let LeaseTarget::Local(model) = &self.target {
            if let Ok(mut last_used) = model.last_used.lock() {
                *last_used = Instant::now();
            }
            model.active_requests.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
