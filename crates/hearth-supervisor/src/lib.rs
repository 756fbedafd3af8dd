//! The supervisor of Hearth's engine worker: the piece that keeps llama.cpp out of the app's
//! process.
//!
//! [`Supervisor`] spawns `hearth engine` (any program that speaks `hearth-protocol`), loads a
//! model into it, and multiplexes requests over its stdin/stdout by request id. If the worker
//! dies (an `abort()` in llama.cpp, an out-of-memory kill, `kill -9`), every request in flight
//! gets [`SupervisorError::WorkerCrashed`], and the next request starts a fresh worker and
//! reloads the last model, so one bad moment never takes the app down. Dropping a
//! [`GenerationStream`] before it ends cancels the generation in the worker.

mod command;
mod embeddings;
pub mod process;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::{
    encode_line, BackendDevice, BackendReport, ContextOverflow, FinishReason, GenerateRequest,
    LoadParams, MemoryReport, ModelInfo, OutputConstraint, Prompt, RequestMetrics, SamplingParams,
    TemplateSource, ThinkingSyntax, TokenLogprob, ToolDefinition, WorkerError, WorkerEvent,
    WorkerRequest,
};
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, Mutex};

pub use command::{WorkerCommand, WORKER_PREFIX_ENV};
pub use embeddings::Embeddings;
use worker::{spawn_worker, SharedStdin, Worker};

/// How long a new worker may take to say it is ready.
pub const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a worker told to stop (stdin closed) may take to finish its step and exit before
/// it is killed.
pub const WORKER_EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long a killed worker may take to be reaped.
const WORKER_KILL_WAIT: Duration = Duration::from_secs(2);

/// Failures seen by callers of the supervisor.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("could not start the engine worker ({program}): {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("the engine worker did not start: {0}")]
    Handshake(String),
    #[error("the model crashed ({status}); the engine was restarted and will reload it for the next request")]
    WorkerCrashed { status: String },
    #[error("{0}")]
    Worker(WorkerError),
    #[error("no model is loaded")]
    NoModelLoaded,
    #[error("the worker sent an unexpected reply: {0}")]
    Protocol(String),
    /// A remote provider (another OpenAI-compatible server) failed a generation that Hearth
    /// passed on to it: see [`GenerationStream::from_events`].
    #[error("the provider `{provider}` failed: {message}")]
    Remote {
        provider: String,
        failure: RemoteFailure,
        message: String,
    },
}

/// How a remote provider failed, for the HTTP status Hearth answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteFailure {
    /// No connection could be made (refused, no route, name not found, connect timeout).
    Unreachable,
    /// Connected, but the answer (its headers, or its next bytes) took too long.
    TimedOut,
    /// The provider answered with this HTTP error status.
    Status(u16),
    /// The answer broke off or could not be read (the provider stopped mid-stream).
    Broken,
}

/// What a running generation reports, in order: `Started`, any number of `Text`, then `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    Started {
        prompt_tokens: u32,
        cached_prompt_tokens: u32,
        template_source: Option<TemplateSource>,
        /// Oldest messages dropped to fit the context (with `ContextOverflow::DropOldestTurns`).
        dropped_messages: u32,
        /// The tags the output thinks in (`None`: all of it is the answer).
        thinking: Option<ThinkingSyntax>,
    },
    /// Visible text, with the log-probabilities of its tokens when they were asked for.
    Text {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    Done {
        finish_reason: FinishReason,
        metrics: RequestMetrics,
        /// The stop string that ended the text, when one did.
        stop_sequence: Option<String>,
    },
}

/// A generation request without its id (the supervisor assigns ids).
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub prompt: Prompt,
    pub sampling: SamplingParams,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    pub constraint: Option<OutputConstraint>,
    /// Alternatives per token to report with log-probabilities (`None`: none).
    pub logprobs: Option<u32>,
    pub context_overflow: ContextOverflow,
    /// Functions the model may call (a chat only).
    pub tools: Vec<ToolDefinition>,
    /// Whether a model that thinks in tags may think (see `GenerateRequest`).
    pub enable_thinking: bool,
    /// Whether the request may speculate when the model does (see `GenerateRequest`).
    pub speculate: bool,
}

impl Generation {
    pub fn new(prompt: Prompt) -> Self {
        Self {
            prompt,
            sampling: SamplingParams::default(),
            max_tokens: None,
            stop: Vec::new(),
            ignore_eos: false,
            constraint: None,
            logprobs: None,
            context_overflow: ContextOverflow::Error,
            tools: Vec::new(),
            enable_thinking: true,
            speculate: true,
        }
    }
}

/// The scheduler's load, as the worker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub queued: u32,
    pub running: u32,
    pub n_parallel: u32,
    /// Batches decoded since the model was loaded.
    pub steps: u64,
}

#[derive(Debug, Default)]
struct State {
    worker: Option<Worker>,
    /// The model to reload into a fresh worker.
    loaded: Option<(PathBuf, LoadParams, ModelInfo)>,
    restarts: u64,
}

/// Owns the worker process; cheap to clone and share between tasks.
#[derive(Debug, Clone)]
pub struct Supervisor {
    command: WorkerCommand,
    state: Arc<Mutex<State>>,
    next_request_id: Arc<AtomicU64>,
}

impl Supervisor {
    pub fn new(command: WorkerCommand) -> Self {
        Self {
            command,
            state: Arc::new(Mutex::new(State::default())),
            next_request_id: Arc::new(AtomicU64::new(1)),
        }
    }

    fn new_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The worker's process id, if one is running (for tests and diagnostics).
    pub async fn worker_pid(&self) -> Option<u32> {
        let state = self.state.lock().await;
        state
            .worker
            .as_ref()
            .filter(|w| w.is_alive())
            .map(|w| w.pid)
    }

    /// How many times a dead worker was replaced.
    pub async fn restarts(&self) -> u64 {
        self.state.lock().await.restarts
    }

    /// The loaded model, if any.
    pub async fn model_info(&self) -> Option<ModelInfo> {
        self.state
            .lock()
            .await
            .loaded
            .as_ref()
            .map(|(_, _, info)| info.clone())
    }

    /// Loads a model (replacing any other) and waits until it is ready.
    pub async fn load(
        &self,
        model_path: &Path,
        params: LoadParams,
    ) -> Result<ModelInfo, SupervisorError> {
        let mut state = self.state.lock().await;
        self.ensure_worker(&mut state).await?;
        let info = self
            .load_into_worker(&mut state, model_path, &params)
            .await?;
        state.loaded = Some((model_path.to_path_buf(), params, info.clone()));
        Ok(info)
    }

    async fn load_into_worker(
        &self,
        state: &mut State,
        model_path: &Path,
        params: &LoadParams,
    ) -> Result<ModelInfo, SupervisorError> {
        let request_id = self.new_request_id();
        let mut events = self
            .send(
                state,
                request_id,
                WorkerRequest::Load {
                    request_id,
                    model_path: model_path.to_path_buf(),
                    params: params.clone(),
                },
            )
            .await?;
        match next_reply(&mut events).await? {
            WorkerEvent::Loaded { model, .. } => Ok(model),
            other => Err(SupervisorError::Protocol(format!("{other:?}"))),
        }
    }

    fn crash_error(&self, state: &State) -> SupervisorError {
        let status = state
            .worker
            .as_ref()
            .and_then(|w| w.exited.lock().ok().and_then(|e| e.clone()))
            .unwrap_or_else(|| "worker exited".to_string());
        SupervisorError::WorkerCrashed { status }
    }

    /// Starts a worker if none is alive; after a crash, reloads the last model into it.
    async fn ensure_worker(&self, state: &mut State) -> Result<(), SupervisorError> {
        if state.worker.as_ref().is_some_and(Worker::is_alive) {
            return Ok(());
        }
        let had_worker = state.worker.take().is_some();
        state.worker = Some(spawn_worker(&self.command).await?);
        if had_worker {
            state.restarts += 1;
            tracing::warn!(restarts = state.restarts, "engine worker restarted");
            if let Some((path, params, _)) = state.loaded.clone() {
                let info = self.load_into_worker(state, &path, &params).await?;
                state.loaded = Some((path, params, info));
            }
        }
        Ok(())
    }

    async fn send(
        &self,
        state: &mut State,
        request_id: u64,
        request: WorkerRequest,
    ) -> Result<mpsc::UnboundedReceiver<Result<WorkerEvent, SupervisorError>>, SupervisorError>
    {
        let worker = state
            .worker
            .as_ref()
            .ok_or(SupervisorError::NoModelLoaded)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        if let Ok(mut pending) = worker.pending.lock() {
            pending.insert(request_id, sender);
        }
        let line = encode_line(&request).map_err(|e| SupervisorError::Protocol(e.to_string()))?;
        let written = match worker.stdin.lock().await.as_mut() {
            Some(stdin) => stdin
                .write_all(line.as_bytes())
                .await
                .and(stdin.flush().await),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if written.is_err() {
            if let Ok(mut pending) = worker.pending.lock() {
                pending.remove(&request_id);
            }
            return Err(self.crash_error(state));
        }
        Ok(receiver)
    }

    /// Starts a generation on the loaded model.
    pub async fn generate(
        &self,
        generation: Generation,
    ) -> Result<GenerationStream, SupervisorError> {
        let mut state = self.state.lock().await;
        if state.loaded.is_none() {
            return Err(SupervisorError::NoModelLoaded);
        }
        self.ensure_worker(&mut state).await?;
        let request_id = self.new_request_id();
        let request = WorkerRequest::Generate(GenerateRequest {
            request_id,
            prompt: generation.prompt,
            sampling: generation.sampling,
            max_tokens: generation.max_tokens,
            stop: generation.stop,
            ignore_eos: generation.ignore_eos,
            constraint: generation.constraint,
            logprobs: generation.logprobs,
            context_overflow: generation.context_overflow,
            tools: generation.tools,
            enable_thinking: generation.enable_thinking,
            speculate: generation.speculate,
        });
        let events = self.send(&mut state, request_id, request).await?;
        let stdin = state.worker.as_ref().map(|w| w.stdin.clone());
        Ok(GenerationStream {
            request_id,
            events,
            stdin,
            finished: false,
        })
    }

    /// Sends a request about the loaded model that is answered by exactly one event, and
    /// waits for it.
    async fn request_reply(
        &self,
        build: impl FnOnce(u64) -> WorkerRequest,
    ) -> Result<WorkerEvent, SupervisorError> {
        self.worker_reply(true, build).await
    }

    /// Sends a request that is answered by exactly one event, and waits for it; without
    /// `needs_model`, to a fresh worker if none is running.
    async fn worker_reply(
        &self,
        needs_model: bool,
        build: impl FnOnce(u64) -> WorkerRequest,
    ) -> Result<WorkerEvent, SupervisorError> {
        let mut state = self.state.lock().await;
        if needs_model && state.loaded.is_none() {
            return Err(SupervisorError::NoModelLoaded);
        }
        self.ensure_worker(&mut state).await?;
        let request_id = self.new_request_id();
        let mut events = self.send(&mut state, request_id, build(request_id)).await?;
        drop(state);
        next_reply(&mut events).await
    }

    /// Tokenizes text with the loaded model.
    pub async fn tokenize(
        &self,
        text: &str,
        add_special: bool,
    ) -> Result<Vec<i32>, SupervisorError> {
        let text = text.to_string();
        match self
            .request_reply(|request_id| WorkerRequest::Tokenize {
                request_id,
                text,
                add_special,
            })
            .await?
        {
            WorkerEvent::Tokenized { tokens, .. } => Ok(tokens),
            other => Err(SupervisorError::Protocol(format!("{other:?}"))),
        }
    }

    /// The scheduler's queue depth and running sequences.
    pub async fn stats(&self) -> Result<EngineStats, SupervisorError> {
        match self
            .request_reply(|request_id| WorkerRequest::Stats { request_id })
            .await?
        {
            WorkerEvent::Stats {
                queued,
                running,
                n_parallel,
                steps,
                ..
            } => Ok(EngineStats {
                queued,
                running,
                n_parallel,
                steps,
            }),
            other => Err(SupervisorError::Protocol(format!("{other:?}"))),
        }
    }

    /// What llama.cpp allocated for the loaded model and context (its buffers, by purpose).
    pub async fn memory_report(&self) -> Result<MemoryReport, SupervisorError> {
        match self
            .request_reply(|request_id| WorkerRequest::MemoryReport { request_id })
            .await?
        {
            WorkerEvent::Memory { report, .. } => Ok(report),
            other => Err(SupervisorError::Protocol(format!("{other:?}"))),
        }
    }

    /// The devices llama.cpp's backends offer, with their total and free memory. Needs no
    /// model: starts a worker if none is running.
    pub async fn devices(&self) -> Result<Vec<BackendDevice>, SupervisorError> {
        Ok(self.devices_and_backends().await?.0)
    }

    /// [`Supervisor::devices`], and what became of each backend library (the CPU variant in
    /// use, the GPU backends loaded or failed, with why).
    pub async fn devices_and_backends(
        &self,
    ) -> Result<(Vec<BackendDevice>, BackendReport), SupervisorError> {
        match self
            .worker_reply(false, |request_id| WorkerRequest::Devices { request_id })
            .await?
        {
            WorkerEvent::Devices {
                devices, backends, ..
            } => Ok((devices, backends)),
            other => Err(SupervisorError::Protocol(format!("{other:?}"))),
        }
    }

    /// Stops the worker: closes its stdin and waits for it to exit.
    pub async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        if let Some(worker) = state.worker.take() {
            // Dropping the handle closes the pipe; the worker finishes its step and exits.
            drop(worker.stdin.lock().await.take());
            if !worker.wait_exited(WORKER_EXIT_GRACE).await {
                // Stuck (a step that never ends, a driver call that hangs): nothing it could
                // still send is wanted, and its memory is.
                tracing::warn!(
                    pid = worker.pid,
                    "the engine worker did not exit; killing it"
                );
                worker.kill.notify_one();
                worker.wait_exited(WORKER_KILL_WAIT).await;
            }
        }
    }
}

/// The events of one generation. Dropping it early cancels the generation in the worker.
#[derive(Debug)]
pub struct GenerationStream {
    request_id: u64,
    events: mpsc::UnboundedReceiver<Result<WorkerEvent, SupervisorError>>,
    stdin: Option<SharedStdin>,
    finished: bool,
}

impl GenerationStream {
    /// A stream fed by something other than an engine worker (a remote provider's answer,
    /// translated into worker events by the server). It follows the same rules: `Started`,
    /// `Token`s, then `Done` or an error; the sender going away without `Done` reads as a
    /// failure. Dropping the stream closes the channel, which tells the feeder to stop.
    pub fn from_events(
        request_id: u64,
        events: mpsc::UnboundedReceiver<Result<WorkerEvent, SupervisorError>>,
    ) -> Self {
        Self {
            request_id,
            events,
            stdin: None,
            finished: false,
        }
    }

    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// The next event; `None` after `Done` or an error.
    pub async fn next(&mut self) -> Option<Result<GenerationEvent, SupervisorError>> {
        if self.finished {
            return None;
        }
        loop {
            let event = match next_reply(&mut self.events).await {
                Ok(event) => event,
                Err(error) => {
                    self.finished = true;
                    return Some(Err(error));
                }
            };
            let mapped = match event {
                WorkerEvent::Started {
                    prompt_tokens,
                    cached_prompt_tokens,
                    template_source,
                    dropped_messages,
                    thinking,
                    ..
                } => Ok(GenerationEvent::Started {
                    prompt_tokens,
                    cached_prompt_tokens,
                    template_source,
                    dropped_messages,
                    thinking,
                }),
                WorkerEvent::Token { text, logprobs, .. } => {
                    Ok(GenerationEvent::Text { text, logprobs })
                }
                WorkerEvent::Done {
                    finish_reason,
                    metrics,
                    stop_sequence,
                    ..
                } => {
                    self.finished = true;
                    Ok(GenerationEvent::Done {
                        finish_reason,
                        metrics,
                        stop_sequence,
                    })
                }
                other => {
                    tracing::debug!(?other, "ignored event");
                    continue;
                }
            };
            return Some(mapped);
        }
    }

    /// Asks the worker to stop this generation; its `Done` (cancelled) still arrives.
    pub async fn cancel(&self) {
        if let Some(stdin) = &self.stdin {
            send_cancel(stdin, self.request_id).await;
        }
    }
}

/// The next event for a request, a worker's error event as [`SupervisorError::Worker`]. The
/// event reader ([`read_events`]) sends every request its events and, when the worker dies,
/// [`SupervisorError::WorkerCrashed`] with the exit status before it lets go of the request's
/// sender, so a request's channel never ends silently: its end is reported as a crash only
/// because the channel's type allows it.
async fn next_reply(
    events: &mut mpsc::UnboundedReceiver<Result<WorkerEvent, SupervisorError>>,
) -> Result<WorkerEvent, SupervisorError> {
    match events.recv().await {
        Some(Ok(WorkerEvent::Error { error, .. })) => Err(SupervisorError::Worker(error)),
        Some(reply) => reply,
        None => Err(SupervisorError::WorkerCrashed {
            status: "worker exited".into(),
        }),
    }
}

async fn send_cancel(stdin: &Mutex<Option<ChildStdin>>, request_id: u64) {
    if let Ok(line) = encode_line(&WorkerRequest::Cancel { request_id }) {
        if let Some(stdin) = stdin.lock().await.as_mut() {
            let _ = stdin.write_all(line.as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }
}

impl Drop for GenerationStream {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // A caller that stops listening (a closed HTTP connection, Ctrl-C) frees its slot.
        if let (Some(stdin), Ok(runtime)) =
            (self.stdin.clone(), tokio::runtime::Handle::try_current())
        {
            let request_id = self.request_id;
            runtime.spawn(async move { send_cancel(&stdin, request_id).await });
        }
    }
}
