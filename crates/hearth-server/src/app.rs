//! Starting the whole server in-process: the one way `hearth serve` and the desktop shell
//! bring the API up.
//!
//! [`start`] checks the options before binding anything (no listening beyond loopback without
//! a key, no wildcard origins), resolves the models to serve, binds, builds the [`AppState`]
//! (security policy, model manager, library, conversation history, downloads), starts
//! loading the first models in the background (so `/health` turns 200 when they are ready)
//! and serves on a task of its own. The [`RunningServer`] it returns tells the bound address
//! (`port: 0` picks a free port) and stops everything with [`RunningServer::shutdown`]:
//! conversation answers are stopped and saved, connections close, and every engine worker
//! ends.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hearth_models::{DownloadManager, HubClient, ModelId, ModelLibrary, ModelsError};
use hearth_protocol::{LoadParams, DEFAULT_MAX_QUEUE, DEFAULT_N_CTX};
use hearth_store::StoreError;
use hearth_supervisor::WorkerCommand;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::providers::{ProviderRegistry, RemoteTimeouts};
use crate::security::{SecurityConfigError, SecurityPolicy};
use crate::{
    router, AppState, Metrics, ModelManager, ModelManagerConfig, ServableModel, DEFAULT_HOST,
    DEFAULT_PORT, SHUTDOWN_GRACE,
};

/// Sequences answered at once per model: a chat window and a tool or two side by side.
pub const DEFAULT_PARALLEL: u32 = 2;
/// Unload a model unused for five minutes (as Ollama does), giving its memory back.
pub const DEFAULT_IDLE_UNLOAD: Duration = Duration::from_secs(300);
/// How long a request waits for its model to load before it gets 503 and `Retry-After`.
pub const DEFAULT_LOAD_WAIT: Duration = Duration::from_secs(5);
/// Models loaded at once: one by default, since a laptop rarely has memory for two.
pub const DEFAULT_MAX_LOADED: usize = 1;
/// How long a shutdown waits for stopped answers to be saved.
const ANSWER_SAVE_WAIT: Duration = Duration::from_secs(2);

/// Everything the server needs to start. [`ServerOptions::new`] gives `hearth serve`'s
/// defaults.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on; anything but loopback needs an API key.
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free port ([`RunningServer::local_addr`] tells which).
    pub port: u16,
    /// When `port` is taken by another program, listen on a free port instead of failing,
    /// and report the taken one ([`RunningServer::port_taken`], `/api/system`'s
    /// `server.configured_port_taken`, which the UI shows). The desktop app's choice: its
    /// window works either way.
    pub port_fallback: bool,
    /// Models to serve: GGUF files (served under ids made from their names) or installed
    /// ids. The first `max_loaded` are loaded at startup; every installed model is also
    /// served by its id.
    pub models: Vec<String>,
    /// Keys accepted as `Authorization: Bearer KEY` (any of them); with one, `/v1/*` needs a
    /// key too. `/api/*` always needs a key or the access token.
    pub api_keys: Vec<String>,
    /// `hearth serve`'s access token for the web UI ([`crate::load_or_create_access_token`]):
    /// accepted like a key, without making `/v1/*` need one.
    pub access_token: Option<String>,
    /// Web origins allowed to call the API besides the server's own (never a wildcard).
    pub allowed_origins: Vec<String>,
    /// Sequences each model answers at once.
    pub parallel: u32,
    /// Context length of each sequence, in tokens (the KV cache holds n_ctx × parallel).
    pub n_ctx: u32,
    /// Unload a model after this long unused (`None`: never).
    pub idle_unload: Option<Duration>,
    /// Requests that may wait for a free sequence per model.
    pub max_queue: u32,
    /// Models loaded at once.
    pub max_loaded: usize,
    /// How long a request waits for its model to load before it gets 503.
    pub load_wait: Duration,
    /// Threads per model (`None`: the physical cores).
    pub n_threads: Option<u32>,
    /// Layers to offload to the GPU (`auto`: the planner's, in the worker).
    pub n_gpu_layers: hearth_protocol::GpuLayers,
    /// Speculative decoding for every model (`ngram` or `off`); `None`: each model's catalog
    /// draft when the planner advises it (a draft model is per model).
    pub speculative: Option<hearth_protocol::SpeculativeMode>,
    /// Where models (`models/`), the conversation history and the settings live.
    pub data_dir: PathBuf,
    /// How to start an engine worker (`hearth engine`, or the desktop's own binary).
    pub worker_command: WorkerCommand,
    /// How long request headers may take and how many connections are served at once.
    pub connection_limits: crate::ConnectionLimits,
    /// Also serve Ollama's API on this port of the same host (`hearth serve --ollama`; the
    /// desktop's `ollama_api` setting). `None`: no Ollama listener.
    pub ollama_port: Option<u16>,
    /// How to start the hardware probe's process ([`WorkerCommand::probe_report`]; the data
    /// directory follows). `None`: the machine is not probed (`/api/system` has no probe, and
    /// `/api/models` no fits).
    pub probe_command: Option<WorkerCommand>,
    /// How long a remote provider may take to connect, answer and go silent mid-stream.
    pub remote_timeouts: RemoteTimeouts,
}

impl ServerOptions {
    /// `hearth serve`'s defaults for the Hearth binary `binary`, whose hidden subcommands run
    /// the engine workers and the probe process ([`WorkerCommand::engine`],
    /// [`WorkerCommand::probe_report`]).
    pub fn for_binary(data_dir: impl Into<PathBuf>, binary: impl Into<PathBuf>) -> Self {
        let binary = binary.into();
        Self {
            probe_command: Some(WorkerCommand::probe_report(&binary)),
            ..Self::new(data_dir, WorkerCommand::engine(binary))
        }
    }

    /// `hearth serve`'s defaults (127.0.0.1 on [`DEFAULT_PORT`], no models given, no key), with
    /// engine workers started by `worker_command` and no probe.
    pub fn new(data_dir: impl Into<PathBuf>, worker_command: WorkerCommand) -> Self {
        Self {
            host: DEFAULT_HOST,
            port: DEFAULT_PORT,
            port_fallback: false,
            models: Vec::new(),
            api_keys: Vec::new(),
            access_token: None,
            allowed_origins: Vec::new(),
            parallel: DEFAULT_PARALLEL,
            n_ctx: DEFAULT_N_CTX,
            idle_unload: Some(DEFAULT_IDLE_UNLOAD),
            max_queue: DEFAULT_MAX_QUEUE,
            max_loaded: DEFAULT_MAX_LOADED,
            load_wait: DEFAULT_LOAD_WAIT,
            n_threads: None,
            n_gpu_layers: hearth_protocol::GpuLayers::Auto,
            speculative: None,
            data_dir: data_dir.into(),
            worker_command,
            connection_limits: crate::ConnectionLimits::default(),
            probe_command: None,
            remote_timeouts: RemoteTimeouts::default(),
            ollama_port: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--parallel must be at least 1")]
    ZeroParallel,
    #[error("--ctx × --parallel is too large")]
    ContextTooLarge,
    #[error(transparent)]
    Security(#[from] SecurityConfigError),
    #[error("--model {spec}: there is no such file, and no installed model has this id (`hearth ls` lists them)")]
    UnknownModel { spec: String },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the conversation history: {0}")]
    History(#[source] StoreError),
    #[error("cannot set up model downloads: {0}")]
    Downloads(#[source] ModelsError),
}

/// A server serving on a task of its own.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    served_model_ids: Vec<String>,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    ollama: Option<crate::ollama::OllamaListener>,
}

/// What `--model` values name: files (served under ids made from their names) and installed
/// ids. Returns the models given by path and every model to preload, in order.
pub fn resolve_models(
    specs: &[String],
    library: &ModelLibrary,
) -> Result<(Vec<ServableModel>, Vec<ServableModel>), StartError> {
    let mut by_path: Vec<ServableModel> = Vec::new();
    let mut preload = Vec::new();
    for spec in specs {
        let path = Path::new(spec);
        if path.is_file() {
            let mut model = ServableModel::from_path(path);
            // Two files with the same name in different folders get distinct ids.
            let base = model.id.clone();
            let mut suffix = 2;
            while by_path.iter().any(|m| m.id == model.id) {
                model.id = format!("{base}-{suffix}");
                suffix += 1;
            }
            by_path.push(model.clone());
            preload.push(model);
            continue;
        }
        let installed = ModelId::new(spec.as_str())
            .ok()
            .and_then(|id| library.get(&id).ok());
        match installed {
            Some(installed) => preload.push(ServableModel {
                id: spec.clone(),
                path: installed.model_path,
                created: 0,
            }),
            None => return Err(StartError::UnknownModel { spec: spec.clone() }),
        }
    }
    Ok((by_path, preload))
}

/// Binds `requested`; with `fallback`, a port another program holds gives way to a free one,
/// returned with the taken port.
async fn bind(
    requested: SocketAddr,
    fallback: bool,
) -> Result<(tokio::net::TcpListener, Option<u16>), StartError> {
    let failed = |address, source| StartError::Bind { address, source };
    match tokio::net::TcpListener::bind(requested).await {
        Ok(listener) => Ok((listener, None)),
        Err(error)
            if fallback
                && requested.port() != 0
                && error.kind() == std::io::ErrorKind::AddrInUse =>
        {
            tracing::warn!(address = %requested, %error, "the configured port is taken; listening on a free port");
            let any_port = SocketAddr::new(requested.ip(), 0);
            let listener = tokio::net::TcpListener::bind(any_port)
                .await
                .map_err(|source| failed(any_port, source))?;
            Ok((listener, Some(requested.port())))
        }
        Err(source) => Err(failed(requested, source)),
    }
}

/// Checks `options`, binds, builds the state and serves on a task of its own.
pub async fn start(options: ServerOptions) -> Result<RunningServer, StartError> {
    if options.parallel == 0 {
        return Err(StartError::ZeroParallel);
    }
    // The worker's context holds every sequence's cache.
    let n_ctx_total = options
        .n_ctx
        .checked_mul(options.parallel)
        .ok_or(StartError::ContextTooLarge)?;
    let requested = SocketAddr::new(options.host, options.port);
    // Refuse an unsafe configuration before binding anything.
    let checked = SecurityPolicy::for_bound_address(
        requested,
        options.api_keys.clone(),
        &options.allowed_origins,
    )?;
    if let Some(token) = &options.access_token {
        checked.with_access_token(token.clone())?;
    }
    let library = ModelLibrary::new(hearth_supervisor::process::models_dir(&options.data_dir));
    let (by_path, preload) = resolve_models(&options.models, &library)?;

    let (listener, port_taken) = bind(requested, options.port_fallback).await?;
    let bound = listener.local_addr().map_err(|source| StartError::Bind {
        address: requested,
        source,
    })?;
    let mut security =
        SecurityPolicy::for_bound_address(bound, options.api_keys, &options.allowed_origins)?;
    if let Some(token) = options.access_token {
        security = security.with_access_token(token)?;
    }

    let conversations =
        crate::conversations::open_store(&options.data_dir).map_err(StartError::History)?;
    let hub = HubClient::from_environment(Default::default()).map_err(StartError::Downloads)?;
    let downloads = Arc::new(DownloadManager::new(library.clone(), hub));

    let machine =
        crate::system::MachineInfo::new(options.data_dir.clone(), bound, options.probe_command)
            .with_port_taken(port_taken);
    let metrics = Arc::new(Metrics::default().with_draft_acceptance(Arc::new(
        crate::draft_acceptance::DraftAcceptanceRecorder::new(options.data_dir.clone()),
    )));
    let max_loaded = options.max_loaded.max(1);
    // The KV cache's disk budget is read once: it applies from the next start.
    let kv_disk_budget_bytes = crate::settings::SettingsStore::new(options.data_dir.clone())
        .load()
        .kv_cache_disk_budget_bytes();
    let models = ModelManager::new(
        ModelManagerConfig {
            models: by_path,
            library: Some(library),
            worker_command: options.worker_command,
            load_params: LoadParams {
                n_ctx: n_ctx_total,
                n_parallel: options.parallel,
                max_queue: options.max_queue,
                n_threads: options.n_threads,
                n_gpu_layers: options.n_gpu_layers,
                speculative: options.speculative.unwrap_or_default(),
                kv_disk_dir: Some(crate::kv_cache::folder(&options.data_dir)),
                kv_disk_budget_bytes,
                ..LoadParams::default()
            },
            idle_unload: options.idle_unload.filter(|idle| !idle.is_zero()),
            load_wait: options.load_wait,
            max_loaded_models: max_loaded,
            catalog_drafts: options.speculative.is_none(),
            providers: Some(ProviderRegistry::new(
                &options.data_dir,
                options.remote_timeouts,
            )),
        },
        metrics.clone(),
    );
    for model in preload.into_iter().take(max_loaded) {
        if let Err(error) = models.preload(model) {
            tracing::warn!(%error, "cannot preload a model");
        }
    }
    let served: Vec<String> = models.list().into_iter().map(|m| m.id).collect();

    let state = AppState {
        conversations: Some(conversations),
        downloads: Some(downloads),
        machine: Arc::new(machine),
        settings: Some(Arc::new(crate::settings::SettingsStore::new(
            options.data_dir.clone(),
        ))),
        ..AppState::new(models, metrics, Arc::new(security))
    };
    // Ollama's port may be held by Ollama itself: `hearth serve --ollama` says so and stops,
    // the desktop (which falls back for its own port too) goes on without it.
    let ollama = match options.ollama_port {
        None => None,
        Some(port) => match bind(SocketAddr::new(options.host, port), false).await {
            Ok((listener, _)) => Some(listener),
            Err(error) if options.port_fallback => {
                tracing::warn!(%error, "the Ollama API is not served");
                None
            }
            Err(error) => return Err(error),
        },
    };
    let mut server = RunningServer::spawn(listener, state, served, options.connection_limits)
        .map_err(|source| StartError::Bind {
            address: bound,
            source,
        })?;
    if let Some(listener) = ollama {
        server.ollama = Some(
            crate::ollama::OllamaListener::spawn(
                listener,
                &server.state,
                options.connection_limits,
            )
            .map_err(|source| StartError::Bind {
                address: bound,
                source,
            })?,
        );
    }
    Ok(server)
}

impl RunningServer {
    /// Serves `router(state)` on `listener` on a task of its own.
    fn spawn(
        listener: tokio::net::TcpListener,
        state: AppState,
        served_model_ids: Vec<String>,
        limits: crate::ConnectionLimits,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        state.models.spawn_idle_reaper();
        let (stop, stop_receiver) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::listener::serve(
            listener,
            router(state.clone()),
            limits,
            stop_receiver,
        ));
        Ok(Self {
            local_addr,
            served_model_ids,
            state,
            stop: Some(stop),
            task,
            ollama: None,
        })
    }

    /// Where the Ollama API listens, when it does ([`ServerOptions::ollama_port`]).
    pub fn ollama_addr(&self) -> Option<SocketAddr> {
        self.ollama
            .as_ref()
            .map(crate::ollama::OllamaListener::local_addr)
    }

    /// The address the server listens on (with the port picked for `port: 0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The configured port, when another program held it and the server listens on a free
    /// one instead ([`ServerOptions::port_fallback`]).
    pub fn port_taken(&self) -> Option<u16> {
        self.state.machine.port_taken()
    }

    /// The ids of the models served at startup (given ones first, then installed ones).
    pub fn served_model_ids(&self) -> &[String] {
        &self.served_model_ids
    }

    /// The state the handlers share.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `signal` resolves (or the server fails), then shuts down.
    pub async fn run_until(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tokio::select! {
            joined = &mut self.task => {
                self.state.answers.stop_all();
                self.state.models.shutdown_all().await;
                return joined.unwrap_or_else(|error| Err(std::io::Error::other(error)));
            }
            () = signal => {}
        }
        self.shutdown().await
    }

    /// Stops the server: conversation answers stop (saved as `stopped`), the listener closes,
    /// other requests in flight get at most [`SHUTDOWN_GRACE`], and every engine worker
    /// (loaded or loading) ends.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.state.answers.stop_all();
        if let Some(ollama) = self.ollama.take() {
            ollama.stop(SHUTDOWN_GRACE).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(joined) => joined.unwrap_or_else(|error| Err(std::io::Error::other(error))),
            Err(_) => {
                tracing::info!("answers still running after the grace period; stopping anyway");
                self.task.abort();
                Ok(())
            }
        };
        if !self.state.answers.wait_finished(ANSWER_SAVE_WAIT).await {
            tracing::warn!("an answer was not saved before shutdown");
        }
        self.state.models.shutdown_all().await;
        result
    }
}

#[cfg(test)]
mod tests;
