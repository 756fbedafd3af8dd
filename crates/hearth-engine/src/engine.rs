//! The engine thread: owns the llama.cpp model and context (the context is not `Send`), and
//! runs the scheduler loop over admitted requests, each step one batch.
//!
//! Everything crosses to this thread by message: [`EngineHandle::submit`] sends a
//! [`WorkerRequest`], and the thread reports [`WorkerEvent`]s to an [`EventSink`]. A step
//! decodes one token for every running sequence plus a bounded chunk of pending prompt, so a
//! long prompt never stalls other streams; new requests join and cancellations land between
//! steps.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hearth_protocol::{
    ChatMessage, ContextOverflow, ErrorKind, FinishReason, GenerateRequest, GpuLayers, LoadParams,
    MetricsRecorder, ModelInfo, Prompt, Role, TemplateSource, TokenLogprob, WorkerError,
    WorkerEvent, WorkerRequest,
};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::load::{self, file_name, LlamaLogCapture};
use crate::memory;
use crate::offload;
use crate::policy::{self, FreeSlot, PrefillPacer};
use crate::sampling::{build_sampler, token_logprob};
use crate::stop::{StopMatcher, StopOutcome};
use crate::template::{self, TemplateTokens};
use crate::utf8::Utf8Accumulator;

/// Receives the events of the engine thread, in order.
pub trait EventSink: Send + 'static {
    fn emit(&mut self, event: WorkerEvent);
}

impl<F: FnMut(WorkerEvent) + Send + 'static> EventSink for F {
    fn emit(&mut self, event: WorkerEvent) {
        self(event)
    }
}

/// The scheduler's counters, published by the engine thread after every step so another
/// thread can answer `Stats` at once instead of waiting for the step in progress (a long
/// prefill step takes seconds, and a metrics scrape should not).
#[derive(Debug, Default)]
pub struct SchedulerGauges {
    loaded: AtomicBool,
    queued: AtomicU32,
    running: AtomicU32,
    n_parallel: AtomicU32,
    steps: AtomicU64,
}

/// One reading of [`SchedulerGauges`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerSnapshot {
    pub queued: u32,
    pub running: u32,
    pub n_parallel: u32,
    pub steps: u64,
}

impl SchedulerGauges {
    /// The counters as of the last step, or `None` while no model is loaded.
    pub fn snapshot(&self) -> Option<SchedulerSnapshot> {
        if !self.loaded.load(Ordering::Acquire) {
            return None;
        }
        Some(SchedulerSnapshot {
            queued: self.queued.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            n_parallel: self.n_parallel.load(Ordering::Relaxed),
            steps: self.steps.load(Ordering::Relaxed),
        })
    }

    fn publish(&self, snapshot: SchedulerSnapshot) {
        self.queued.store(snapshot.queued, Ordering::Relaxed);
        self.running.store(snapshot.running, Ordering::Relaxed);
        self.n_parallel
            .store(snapshot.n_parallel, Ordering::Relaxed);
        self.steps.store(snapshot.steps, Ordering::Relaxed);
        self.loaded.store(true, Ordering::Release);
    }

    fn unload(&self) {
        self.loaded.store(false, Ordering::Release);
    }
}

/// A running engine thread.
#[derive(Debug)]
pub struct EngineHandle {
    commands: Sender<WorkerRequest>,
    thread: Option<JoinHandle<()>>,
    gauges: Arc<SchedulerGauges>,
}

impl EngineHandle {
    /// Starts the engine thread; it waits for a `Load` request.
    pub fn spawn(sink: impl EventSink) -> std::io::Result<Self> {
        let (commands, receiver) = mpsc::channel();
        let gauges = Arc::new(SchedulerGauges::default());
        let thread_gauges = gauges.clone();
        let thread = std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || engine_main(receiver, Box::new(sink), &thread_gauges))?;
        Ok(Self {
            commands,
            thread: Some(thread),
            gauges,
        })
    }

    /// The scheduler's counters as of its last step (`None` while no model is loaded).
    pub fn scheduler_snapshot(&self) -> Option<SchedulerSnapshot> {
        self.gauges.snapshot()
    }

    /// Hands a request to the engine thread. False if the thread has exited.
    pub fn submit(&self, request: WorkerRequest) -> bool {
        self.commands.send(request).is_ok()
    }

    /// Asks the thread to stop after its current step and waits for it.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.commands.send(WorkerRequest::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The `Stats` answer for a snapshot of the scheduler.
pub fn stats_event(request_id: u64, snapshot: SchedulerSnapshot) -> WorkerEvent {
    WorkerEvent::Stats {
        request_id,
        queued: snapshot.queued,
        running: snapshot.running,
        n_parallel: snapshot.n_parallel,
        steps: snapshot.steps,
    }
}

fn error_event(request_id: Option<u64>, error: WorkerError) -> WorkerEvent {
    WorkerEvent::Error { request_id, error }
}

/// What ended a session with one loaded model.
enum SessionEnd {
    Load {
        request_id: u64,
        model_path: std::path::PathBuf,
        params: LoadParams,
    },
    Shutdown,
}

fn engine_main(
    commands: Receiver<WorkerRequest>,
    mut sink: Box<dyn EventSink>,
    gauges: &Arc<SchedulerGauges>,
) {
    let mut next_load: Option<SessionEnd> = None;
    loop {
        let request = match next_load.take() {
            Some(load) => load,
            None => match wait_for_load(&commands, sink.as_mut()) {
                Some(load) => load,
                None => return,
            },
        };
        let SessionEnd::Load {
            request_id,
            model_path,
            params,
        } = request
        else {
            return;
        };
        let session = run_model_session(
            &model_path,
            &params,
            request_id,
            &commands,
            sink.as_mut(),
            gauges,
        );
        gauges.unload();
        match session {
            Ok(end @ SessionEnd::Load { .. }) => next_load = Some(end),
            Ok(SessionEnd::Shutdown) => return,
            Err(error) => sink.emit(error_event(Some(request_id), error)),
        }
    }
}

/// Before any model is loaded, answers everything but `Load` with an error.
fn wait_for_load(
    commands: &Receiver<WorkerRequest>,
    sink: &mut dyn EventSink,
) -> Option<SessionEnd> {
    loop {
        match commands.recv() {
            Err(_) | Ok(WorkerRequest::Shutdown) => return None,
            Ok(WorkerRequest::Load {
                request_id,
                model_path,
                params,
            }) => {
                return Some(SessionEnd::Load {
                    request_id,
                    model_path,
                    params,
                })
            }
            Ok(WorkerRequest::Cancel { .. }) => {}
            Ok(WorkerRequest::Devices { request_id }) => sink.emit(devices_event(request_id)),
            Ok(WorkerRequest::Generate(GenerateRequest { request_id, .. }))
            | Ok(WorkerRequest::Tokenize { request_id, .. })
            | Ok(WorkerRequest::RenderChat { request_id, .. })
            | Ok(WorkerRequest::MemoryReport { request_id })
            | Ok(WorkerRequest::Stats { request_id }) => sink.emit(error_event(
                Some(request_id),
                WorkerError::new(ErrorKind::NoModelLoaded, "no model is loaded"),
            )),
        }
    }
}

/// Loads one model, serves requests until a new load or a shutdown, then frees everything.
/// With `--gpu-layers auto`, a load that runs out of memory (the weights or the context) is
/// retried once with a smaller offload, and the log says so.
fn run_model_session(
    model_path: &Path,
    params: &LoadParams,
    load_request_id: u64,
    commands: &Receiver<WorkerRequest>,
    sink: &mut dyn EventSink,
    gauges: &Arc<SchedulerGauges>,
) -> Result<SessionEnd, WorkerError> {
    let started = Instant::now();
    let gpu_devices = crate::backends::gpu_device_indices();
    let mut n_gpu_layers = offload::resolve_gpu_layers(model_path, params, &gpu_devices);
    let mut may_retry = params.n_gpu_layers == GpuLayers::Auto && n_gpu_layers > 0;
    loop {
        let context_params = load::context_params(model_path, params, n_gpu_layers)
            .map_err(|e| e.to_worker_error())?;
        let failure = match load::load_model(model_path, params, n_gpu_layers, &gpu_devices) {
            Err(error) => error,
            Ok(model) => {
                let backend = load::backend().map_err(|detail| {
                    load::LoadError::NoBackend {
                        path: model_path.to_path_buf(),
                        detail,
                    }
                    .to_worker_error()
                })?;
                LlamaLogCapture::clear();
                match model.new_context(backend, context_params) {
                    Ok(context) => {
                        let loaded = LoadedModel {
                            n_gpu_layers,
                            gpu_devices: &gpu_devices,
                            started,
                        };
                        return Ok(serve_model(
                            model_path,
                            params,
                            &model,
                            context,
                            loaded,
                            load_request_id,
                            commands,
                            sink,
                            gauges,
                        ));
                    }
                    Err(_) => load::classify_load_failure(model_path, &LlamaLogCapture::take()),
                }
            }
        };
        if !(may_retry && failure.kind() == ErrorKind::OutOfMemory) {
            return Err(failure.to_worker_error());
        }
        let replanned = offload::planned_gpu_layers(model_path, params).ok();
        let retry = offload::smaller_offload(n_gpu_layers, replanned);
        tracing::warn!(
            model = %file_name(model_path),
            "out of memory with {n_gpu_layers} GPU layers ({failure}); retrying once with {retry}"
        );
        n_gpu_layers = retry;
        may_retry = false;
    }
}

/// What the load decided, for the `Loaded` report.
struct LoadedModel<'a> {
    n_gpu_layers: u32,
    gpu_devices: &'a [usize],
    started: Instant,
}

/// Reports the loaded model and runs its session until a new load or a shutdown.
#[allow(clippy::too_many_arguments)]
fn serve_model(
    model_path: &Path,
    params: &LoadParams,
    model: &LlamaModel,
    context: LlamaContext<'_>,
    loaded: LoadedModel<'_>,
    load_request_id: u64,
    commands: &Receiver<WorkerRequest>,
    sink: &mut dyn EventSink,
    gauges: &Arc<SchedulerGauges>,
) -> SessionEnd {
    let template = ChatTemplate::detect(model);
    if template.source() == TemplateSource::FallbackChatml {
        tracing::warn!(
            model = %file_name(model_path),
            "the model has no chat template; using ChatML"
        );
    }
    let n_ctx = context.n_ctx();
    let n_parallel = params.n_parallel;
    let info = ModelInfo {
        file_name: file_name(model_path),
        architecture: model
            .meta_val_str("general.architecture")
            .unwrap_or_else(|_| "unknown".to_string()),
        n_params: model.n_params(),
        size_bytes: model.size(),
        n_vocab: model.n_vocab(),
        n_layer: model.n_layer(),
        n_ctx_train: model.n_ctx_train(),
        n_ctx,
        n_ctx_per_sequence: n_ctx / n_parallel,
        n_parallel,
        n_threads: params.n_threads.unwrap_or_else(load::default_threads),
        n_batch: context.n_batch(),
        n_ubatch: context.n_ubatch(),
        n_gpu_layers: loaded.n_gpu_layers,
        gpu_devices: crate::backends::device_names(if loaded.n_gpu_layers > 0 {
            loaded.gpu_devices
        } else {
            &[]
        }),
        flash_attention: params.flash_attention,
        kv_cache_type: params.kv_cache_type,
        template_source: template.source(),
        load_time_ms: loaded.started.elapsed().as_secs_f64() * 1000.0,
    };
    tracing::info!(model = %info.file_name, load_ms = info.load_time_ms, n_ctx, n_parallel, "model loaded");
    sink.emit(WorkerEvent::Loaded {
        request_id: load_request_id,
        model: info,
    });
    let mut session = Session::new(model, context, template, params, gauges.clone());
    session.run(commands, sink)
}

/// How this model's chat prompts are rendered (decided once, at load).
enum ChatTemplate {
    Builtin(LlamaChatTemplate),
    Jinja {
        source: String,
        tokens: TemplateTokens,
    },
    FallbackChatml,
}

impl ChatTemplate {
    fn detect(model: &LlamaModel) -> Self {
        let Ok(template) = model.chat_template(None) else {
            return ChatTemplate::FallbackChatml;
        };
        let probe = [LlamaChatMessage::new("user".into(), "hi".into())];
        let recognised = probe
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .map(|messages| {
                model
                    .apply_chat_template(&template, &messages, true)
                    .is_ok()
            })
            .unwrap_or(false);
        if recognised {
            return ChatTemplate::Builtin(template);
        }
        let source = template.to_string().unwrap_or_default();
        let vocab = model.vocab();
        let token_text = |token: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned()
        };
        ChatTemplate::Jinja {
            source,
            tokens: TemplateTokens {
                bos_token: token_text(vocab.bos()),
                eos_token: token_text(vocab.eos()),
            },
        }
    }

    fn source(&self) -> TemplateSource {
        match self {
            ChatTemplate::Builtin(_) => TemplateSource::Builtin,
            ChatTemplate::Jinja { .. } => TemplateSource::Jinja,
            ChatTemplate::FallbackChatml => TemplateSource::FallbackChatml,
        }
    }

    fn render(&self, model: &LlamaModel, messages: &[ChatMessage]) -> Result<String, WorkerError> {
        match self {
            ChatTemplate::Builtin(template) => {
                let messages = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.as_str().into(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        WorkerError::new(
                            ErrorKind::InvalidRequest,
                            "a message contains a NUL character",
                        )
                    })?;
                model
                    .apply_chat_template(template, &messages, true)
                    .map_err(|error| {
                        WorkerError::new(
                            ErrorKind::TemplateFailed,
                            format!("the chat template could not be applied: {error}"),
                        )
                    })
            }
            ChatTemplate::Jinja { source, tokens } => {
                template::render_jinja(source, messages, tokens)
            }
            ChatTemplate::FallbackChatml => Ok(template::render_chatml(messages)),
        }
    }
}

/// A request that holds a slot.
struct ActiveRequest {
    request_id: u64,
    prompt: Vec<LlamaToken>,
    /// Index of the next prompt token to compute.
    prefill_cursor: usize,
    sampler: LlamaSampler,
    detokenizer: Utf8Accumulator,
    stop: StopMatcher,
    max_tokens: Option<u32>,
    ignore_eos: bool,
    metrics: MetricsRecorder,
    /// The last sampled token, to be fed in the next step.
    pending_token: Option<LlamaToken>,
    /// Where this request's logits are in the current batch.
    logits_index: Option<i32>,
    admitted_order: u64,
    /// Alternatives to report per token (`None`: no log-probabilities).
    logprobs: Option<u32>,
    /// Log-probabilities of tokens whose text is still held back.
    pending_logprobs: Vec<TokenLogprob>,
}

/// A prompt ready to run: its tokens, and how it was made.
struct PreparedPrompt {
    tokens: Vec<LlamaToken>,
    template_source: Option<TemplateSource>,
    dropped_messages: u32,
}

/// One sequence of the shared context.
struct Slot {
    seq_id: i32,
    /// The tokens whose keys and values this sequence holds, in position order.
    cached_tokens: Vec<LlamaToken>,
    active: Option<ActiveRequest>,
    last_used_step: u64,
}

/// A request waiting for a free slot.
struct QueuedRequest {
    request: GenerateRequest,
    arrived_at: Instant,
}

struct Session<'model> {
    model: &'model LlamaModel,
    context: LlamaContext<'model>,
    template: ChatTemplate,
    slots: Vec<Slot>,
    queue: VecDeque<QueuedRequest>,
    batch: LlamaBatch<'static>,
    n_batch: u32,
    n_ctx_per_sequence: usize,
    /// A fixed prefill chunk while others decode; `None`: paced by measured step times.
    fixed_prefill_chunk: Option<u32>,
    pacer: PrefillPacer,
    prefix_cache: bool,
    /// Sliding-window and recurrent caches forget old positions, so their sequences cannot be
    /// cut or copied at an arbitrary position: prompts are always computed in full.
    partial_cache_reuse: bool,
    max_queue: usize,
    /// Where the counters are published for the worker's stdin thread.
    gauges: Arc<SchedulerGauges>,
    /// Steps that decoded a batch (a step with nothing to compute is not counted).
    decoded_batches: u64,
    step: u64,
    admissions: u64,
}

impl<'model> Session<'model> {
    fn new(
        model: &'model LlamaModel,
        context: LlamaContext<'model>,
        template: ChatTemplate,
        params: &LoadParams,
        gauges: Arc<SchedulerGauges>,
    ) -> Self {
        let n_batch = context.n_batch();
        let n_parallel = params.n_parallel.max(1);
        let n_ctx_per_sequence = (context.n_ctx() / n_parallel) as usize;
        let slots = (0..n_parallel)
            .map(|seq| Slot {
                seq_id: i32::try_from(seq).unwrap_or(i32::MAX),
                cached_tokens: Vec::new(),
                active: None,
                last_used_step: 0,
            })
            .collect();
        let architecture = model
            .meta_val_str("general.architecture")
            .unwrap_or_default();
        let sliding_window = model
            .meta_val_str(&format!("{architecture}.attention.sliding_window"))
            .ok()
            .and_then(|value| value.trim().parse::<u64>().ok())
            .is_some_and(|window| window > 0);
        let partial_cache_reuse = !sliding_window && !model.is_recurrent() && !model.is_hybrid();
        Self {
            model,
            context,
            template,
            slots,
            queue: VecDeque::new(),
            batch: LlamaBatch::new(n_batch as usize, i32::try_from(n_parallel).unwrap_or(1)),
            n_batch,
            n_ctx_per_sequence,
            fixed_prefill_chunk: params.prefill_chunk,
            pacer: PrefillPacer::new(params.max_decode_slowdown),
            prefix_cache: params.prefix_cache,
            partial_cache_reuse,
            max_queue: params.max_queue as usize,
            gauges,
            decoded_batches: 0,
            step: 0,
            admissions: 0,
        }
    }

    fn is_busy(&self) -> bool {
        !self.queue.is_empty() || self.slots.iter().any(|slot| slot.active.is_some())
    }

    fn run(&mut self, commands: &Receiver<WorkerRequest>, sink: &mut dyn EventSink) -> SessionEnd {
        loop {
            self.gauges.publish(self.snapshot());
            // Idle: block until something arrives. Busy: take what has arrived, then step.
            let first = if self.is_busy() {
                None
            } else {
                match commands.recv_timeout(Duration::from_secs(3600)) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return SessionEnd::Shutdown,
                }
            };
            let mut pending: Vec<WorkerRequest> = first.into_iter().collect();
            loop {
                match commands.try_recv() {
                    Ok(request) => pending.push(request),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        pending.push(WorkerRequest::Shutdown);
                        break;
                    }
                }
            }
            for request in pending {
                if let Some(end) = self.handle_request(request, sink) {
                    self.abandon_all(sink, &end);
                    return end;
                }
            }
            self.admit_queued(sink);
            self.gauges.publish(self.snapshot());
            self.step(sink);
            self.gauges.publish(self.snapshot());
        }
    }

    fn snapshot(&self) -> SchedulerSnapshot {
        let running = self
            .slots
            .iter()
            .filter(|slot| slot.active.is_some())
            .count();
        SchedulerSnapshot {
            queued: u32::try_from(self.queue.len()).unwrap_or(u32::MAX),
            running: u32::try_from(running).unwrap_or(u32::MAX),
            n_parallel: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
            steps: self.decoded_batches,
        }
    }

    fn handle_request(
        &mut self,
        request: WorkerRequest,
        sink: &mut dyn EventSink,
    ) -> Option<SessionEnd> {
        match request {
            WorkerRequest::Shutdown => return Some(SessionEnd::Shutdown),
            WorkerRequest::Load {
                request_id,
                model_path,
                params,
            } => {
                return Some(SessionEnd::Load {
                    request_id,
                    model_path,
                    params,
                })
            }
            WorkerRequest::Generate(request) => {
                let duplicate = self
                    .queue
                    .iter()
                    .any(|q| q.request.request_id == request.request_id)
                    || self.slots.iter().any(|slot| {
                        slot.active.as_ref().map(|a| a.request_id) == Some(request.request_id)
                    });
                if duplicate {
                    sink.emit(error_event(
                        Some(request.request_id),
                        WorkerError::new(
                            ErrorKind::DuplicateRequest,
                            "request id already in flight",
                        ),
                    ));
                } else if self.queue.len() >= self.max_queue {
                    sink.emit(error_event(
                        Some(request.request_id),
                        WorkerError::new(
                            ErrorKind::QueueFull,
                            format!("{} requests are already waiting", self.queue.len()),
                        ),
                    ));
                } else {
                    self.queue.push_back(QueuedRequest {
                        request,
                        arrived_at: Instant::now(),
                    });
                }
            }
            WorkerRequest::Cancel { request_id } => self.cancel(request_id, sink),
            WorkerRequest::Tokenize {
                request_id,
                text,
                add_special,
            } => {
                let tokens = self
                    .model
                    .vocab()
                    .tokenize(text.as_bytes(), add_special, true)
                    .into_iter()
                    .map(|token| token.0)
                    .collect();
                sink.emit(WorkerEvent::Tokenized { request_id, tokens });
            }
            WorkerRequest::MemoryReport { request_id } => sink.emit(WorkerEvent::Memory {
                request_id,
                report: memory::memory_report(self.model.size()),
            }),
            WorkerRequest::Devices { request_id } => sink.emit(devices_event(request_id)),
            WorkerRequest::Stats { request_id } => {
                sink.emit(stats_event(request_id, self.snapshot()));
            }
            WorkerRequest::RenderChat {
                request_id,
                messages,
            } => {
                let prompt = Prompt::Chat { messages };
                let event = match (
                    self.render_prompt_text(&prompt),
                    self.tokenize_prompt(&prompt),
                ) {
                    (Ok(text), Ok((tokens, _))) => WorkerEvent::Rendered {
                        request_id,
                        text,
                        template_source: self.template.source(),
                        prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                    },
                    (Err(error), _) | (_, Err(error)) => error_event(Some(request_id), error),
                };
                sink.emit(event);
            }
        }
        None
    }

    fn cancel(&mut self, request_id: u64, sink: &mut dyn EventSink) {
        if let Some(position) = self
            .queue
            .iter()
            .position(|q| q.request.request_id == request_id)
        {
            if let Some(queued) = self.queue.remove(position) {
                let metrics = MetricsRecorder::new(queued.arrived_at).finish(Instant::now());
                sink.emit(WorkerEvent::Done {
                    request_id,
                    finish_reason: FinishReason::Cancelled,
                    metrics,
                });
            }
            return;
        }
        if let Some(index) = self
            .slots
            .iter()
            .position(|slot| slot.active.as_ref().map(|a| a.request_id) == Some(request_id))
        {
            self.finish(index, FinishReason::Cancelled, sink);
        }
    }

    /// Ends every request: the session is going away (shutdown or another model).
    fn abandon_all(&mut self, sink: &mut dyn EventSink, end: &SessionEnd) {
        let message = match end {
            SessionEnd::Shutdown => "the engine is shutting down",
            SessionEnd::Load { .. } => "the model was unloaded for another",
        };
        let mut ids: Vec<u64> = self.queue.drain(..).map(|q| q.request.request_id).collect();
        ids.extend(
            self.slots
                .iter_mut()
                .filter_map(|slot| slot.active.take())
                .map(|a| a.request_id),
        );
        for request_id in ids {
            sink.emit(error_event(
                Some(request_id),
                WorkerError::new(ErrorKind::NoModelLoaded, message),
            ));
        }
    }

    /// The prompt text of a chat or text prompt (token prompts have none).
    fn render_prompt_text(&self, prompt: &Prompt) -> Result<String, WorkerError> {
        match prompt {
            Prompt::Chat { messages } if messages.is_empty() => Err(WorkerError::new(
                ErrorKind::InvalidRequest,
                "messages is empty",
            )),
            Prompt::Chat { messages } => self.template.render(self.model, messages),
            Prompt::Text { text } => Ok(text.clone()),
            Prompt::Tokens { .. } => Ok(String::new()),
        }
    }

    /// Turns text into tokens; a template that already writes the BOS text gets no second BOS.
    fn tokenize_text(&self, text: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        let bos_text = vocab.token_to_piece(vocab.bos(), true, None);
        let add_special = bos_text.is_empty() || !text.as_bytes().starts_with(&bos_text);
        vocab.tokenize(text.as_bytes(), add_special, true)
    }

    /// Turns a request's prompt into tokens.
    fn tokenize_prompt(
        &self,
        prompt: &Prompt,
    ) -> Result<(Vec<LlamaToken>, Option<TemplateSource>), WorkerError> {
        match prompt {
            Prompt::Tokens { tokens } => {
                let n_vocab = self.model.n_vocab();
                if let Some(bad) = tokens.iter().find(|t| **t < 0 || **t >= n_vocab) {
                    return Err(WorkerError::new(
                        ErrorKind::InvalidRequest,
                        format!("token id {bad} is outside the vocabulary (0..{n_vocab})"),
                    ));
                }
                Ok((tokens.iter().map(|t| LlamaToken(*t)).collect(), None))
            }
            Prompt::Text { .. } => {
                Ok((self.tokenize_text(&self.render_prompt_text(prompt)?), None))
            }
            Prompt::Chat { .. } => Ok((
                self.tokenize_text(&self.render_prompt_text(prompt)?),
                Some(self.template.source()),
            )),
        }
    }

    fn context_exceeded(&self, prompt_tokens: usize) -> WorkerError {
        let mut error = WorkerError::new(
            ErrorKind::ContextLengthExceeded,
            format!(
                "the prompt has {prompt_tokens} tokens but the context holds {}",
                self.n_ctx_per_sequence
            ),
        );
        error.prompt_tokens = u32::try_from(prompt_tokens).ok();
        error.n_ctx = u32::try_from(self.n_ctx_per_sequence).ok();
        error
    }

    /// Validates a request and tokenizes its prompt, dropping the oldest turns of a chat that
    /// does not fit when the request allows it.
    fn prepare(&self, request: &GenerateRequest) -> Result<PreparedPrompt, WorkerError> {
        request
            .sampling
            .validate()
            .map_err(|message| WorkerError::new(ErrorKind::InvalidRequest, message))?;
        if let Some(count) = request.logprobs {
            if count > hearth_protocol::MAX_TOP_LOGPROBS {
                return Err(WorkerError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "top_logprobs must be at most {}, got {count}",
                        hearth_protocol::MAX_TOP_LOGPROBS
                    ),
                ));
            }
        }
        let (tokens, template_source) = self.tokenize_prompt(&request.prompt)?;
        if tokens.is_empty() {
            return Err(WorkerError::new(
                ErrorKind::InvalidRequest,
                "the prompt is empty",
            ));
        }
        if tokens.len() <= self.n_ctx_per_sequence {
            return Ok(PreparedPrompt {
                tokens,
                template_source,
                dropped_messages: 0,
            });
        }
        let (ContextOverflow::DropOldestTurns, Prompt::Chat { messages }) =
            (request.context_overflow, &request.prompt)
        else {
            return Err(self.context_exceeded(tokens.len()));
        };
        // Leave room for the answer: a quarter of the context, or max_tokens if smaller.
        let room_for_answer = request
            .max_tokens
            .map_or(self.n_ctx_per_sequence / 4, |max| max as usize)
            .min(self.n_ctx_per_sequence / 4);
        let limit = self.n_ctx_per_sequence - room_for_answer;
        let is_system: Vec<bool> = messages.iter().map(|m| m.role == Role::System).collect();
        let mut fitted: Option<(Vec<LlamaToken>, usize)> = None;
        let kept = policy::keep_newest_turns(&is_system, |kept| {
            let candidate: Vec<ChatMessage> = kept.iter().map(|&i| messages[i].clone()).collect();
            match self.template.render(self.model, &candidate) {
                Ok(text) => {
                    let tokens = self.tokenize_text(&text);
                    let fits = tokens.len() <= limit;
                    if fits {
                        fitted = Some((tokens, kept.len()));
                    }
                    fits
                }
                Err(_) => false,
            }
        });
        match (kept, fitted) {
            (Some(_), Some((tokens, kept_count))) => Ok(PreparedPrompt {
                tokens,
                template_source,
                dropped_messages: u32::try_from(messages.len() - kept_count).unwrap_or(u32::MAX),
            }),
            _ => Err(self.context_exceeded(tokens.len())),
        }
    }

    /// Moves queued requests into free slots, each to the slot with the longest shared prefix.
    fn admit_queued(&mut self, sink: &mut dyn EventSink) {
        while self.slots.iter().any(|slot| slot.active.is_none()) {
            let Some(queued) = self.queue.pop_front() else {
                return;
            };
            let request = queued.request;
            let request_id = request.request_id;
            let prepared = match self.prepare(&request) {
                Ok(prepared) => prepared,
                Err(error) => {
                    sink.emit(error_event(Some(request_id), error));
                    continue;
                }
            };
            let sampler = match build_sampler(
                self.model,
                &request.sampling,
                request.constraint.as_ref(),
                &prepared.tokens,
                i32::try_from(self.n_ctx_per_sequence).unwrap_or(i32::MAX),
            ) {
                Ok(sampler) => sampler,
                Err(error) => {
                    sink.emit(error_event(Some(request_id), error));
                    continue;
                }
            };
            let prompt = prepared.tokens;
            let reuse = self.prefix_cache && self.partial_cache_reuse;
            let free: Vec<FreeSlot<'_, LlamaToken>> = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.active.is_none())
                .map(|(index, slot)| FreeSlot {
                    index,
                    cached_tokens: &slot.cached_tokens,
                    last_used_step: slot.last_used_step,
                })
                .collect();
            let Some(choice) = policy::choose_slot(&free, &prompt, reuse) else {
                return;
            };
            let reused =
                self.reuse_cached_prefix(choice.index, choice.reused_tokens, &prompt, reuse);
            let mut metrics = MetricsRecorder::new(queued.arrived_at);
            let prompt_tokens = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
            let cached = u32::try_from(reused).unwrap_or(0);
            metrics.admitted(Instant::now(), prompt_tokens, cached);
            let started = WorkerEvent::Started {
                request_id,
                prompt_tokens,
                cached_prompt_tokens: cached,
                template_source: prepared.template_source,
                dropped_messages: prepared.dropped_messages,
            };
            self.admissions += 1;
            self.slots[choice.index].active = Some(ActiveRequest {
                request_id,
                prompt,
                prefill_cursor: reused,
                sampler,
                detokenizer: Utf8Accumulator::default(),
                stop: StopMatcher::new(&request.stop),
                max_tokens: request.max_tokens,
                ignore_eos: request.ignore_eos,
                metrics,
                pending_token: None,
                logits_index: None,
                admitted_order: self.admissions,
                logprobs: request.logprobs,
                pending_logprobs: Vec::new(),
            });
            // Published before `Started` leaves: a client that asks for stats once its
            // request started sees it running.
            self.gauges.publish(self.snapshot());
            sink.emit(started);
            if request.max_tokens == Some(0) {
                self.finish(choice.index, FinishReason::Length, sink);
            }
        }
    }

    /// Makes the slot's sequence hold the longest cached prefix of the prompt: its own (cutting
    /// the divergent tail), or a longer one copied from another sequence (a shared system
    /// prompt), so those tokens are not computed again. Returns how many tokens are reused.
    fn reuse_cached_prefix(
        &mut self,
        index: usize,
        own: usize,
        prompt: &[LlamaToken],
        reuse: bool,
    ) -> usize {
        let seq_id = self.slots[index].seq_id;
        if !reuse {
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
            return 0;
        }
        // Another sequence (running or idle) may share more of the prompt.
        let limit = prompt.len().saturating_sub(1);
        let donor = self
            .slots
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(other, slot)| {
                (
                    other,
                    policy::common_prefix_len(&slot.cached_tokens, prompt).min(limit),
                )
            })
            .max_by_key(|(_, shared)| *shared)
            .filter(|(_, shared)| *shared > own);
        if let Some((donor_index, shared)) = donor {
            let donor_seq = self.slots[donor_index].seq_id;
            let shared_u32 = u32::try_from(shared).unwrap_or(0);
            // Each sequence has its own KV stream, and llama.cpp copies between streams only as
            // a whole (a partial range aborts): copy it all, then cut after the shared prefix.
            let copied = self.context.kv_cache_seq_rm(seq_id, None, None).is_ok()
                && self
                    .context
                    .kv_cache_seq_cp(donor_seq, seq_id, None, None)
                    .is_ok()
                && self
                    .context
                    .kv_cache_seq_rm(seq_id, Some(shared_u32), None)
                    .is_ok();
            if copied {
                self.slots[index].cached_tokens = prompt[..shared].to_vec();
                return shared;
            }
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
            return 0;
        }
        let keep = u32::try_from(own).unwrap_or(0);
        if self
            .context
            .kv_cache_seq_rm(seq_id, Some(keep), None)
            .is_err()
        {
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
            return 0;
        }
        self.slots[index].cached_tokens.truncate(own);
        own
    }

    /// Builds and decodes one batch, then samples for every sequence that produced logits.
    fn step(&mut self, sink: &mut dyn EventSink) {
        let step_started = Instant::now();
        self.step += 1;
        self.batch.clear();
        // Tokens added per slot this step, committed to `cached_tokens` after the decode.
        let mut added: Vec<(usize, Vec<LlamaToken>)> = Vec::new();
        let mut decoding = 0u32;
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let Some(active) = slot.active.as_ref() else {
                continue;
            };
            let Some(token) = active.pending_token else {
                continue;
            };
            if slot.cached_tokens.len() >= self.n_ctx_per_sequence {
                self.finish(index, FinishReason::Length, sink);
                continue;
            }
            let position = i32::try_from(slot.cached_tokens.len()).unwrap_or(i32::MAX);
            let logits_index = self.batch.n_tokens();
            if self
                .batch
                .add(token, position, &[slot.seq_id], true)
                .is_err()
            {
                continue;
            }
            if let Some(active) = self.slots[index].active.as_mut() {
                active.logits_index = Some(logits_index);
                active.pending_token = None;
            }
            added.push((index, vec![token]));
            decoding += 1;
        }
        let budget_tokens = match self.fixed_prefill_chunk {
            Some(chunk) => policy::prefill_budget(self.n_batch, decoding, chunk),
            None => self.pacer.budget(self.n_batch, decoding),
        };
        let mut budget = budget_tokens as usize;
        // Prompts are prefilled in admission order, so the oldest request gets its first token first.
        let mut prefilling: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let active = slot.active.as_ref()?;
                (active.prefill_cursor < active.prompt.len())
                    .then_some((active.admitted_order, index))
            })
            .collect();
        prefilling.sort_unstable();
        for (_, index) in prefilling {
            if budget == 0 {
                break;
            }
            let slot = &mut self.slots[index];
            let seq_id = slot.seq_id;
            let start_position = slot.cached_tokens.len();
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            let take = budget.min(active.prompt.len() - active.prefill_cursor);
            let chunk = active.prompt[active.prefill_cursor..active.prefill_cursor + take].to_vec();
            let completes_prompt = active.prefill_cursor + take == active.prompt.len();
            for (offset, token) in chunk.iter().enumerate() {
                let is_last = completes_prompt && offset + 1 == take;
                if is_last {
                    active.logits_index = Some(self.batch.n_tokens());
                }
                let position = i32::try_from(start_position + offset).unwrap_or(i32::MAX);
                let _ = self.batch.add(*token, position, &[seq_id], is_last);
            }
            active.prefill_cursor += take;
            budget -= take;
            added.push((index, chunk));
        }
        if self.batch.n_tokens() == 0 {
            return;
        }
        self.decoded_batches += 1;
        if let Err(error) = self.context.decode(&mut self.batch) {
            tracing::error!(%error, "decode failed");
            self.fail_all_active(&format!("llama.cpp failed to decode: {error}"), sink);
            return;
        }
        let prefill_tokens =
            added.iter().map(|(_, tokens)| tokens.len()).sum::<usize>() - decoding as usize;
        for (index, tokens) in added {
            self.slots[index].cached_tokens.extend(tokens);
        }
        let now = Instant::now();
        for index in 0..self.slots.len() {
            let Some(active) = self.slots[index].active.as_mut() else {
                continue;
            };
            let Some(logits_index) = active.logits_index.take() else {
                continue;
            };
            let token = active.sampler.sample(&self.context, logits_index);
            active.metrics.token_generated(now);
            if let Some(alternatives) = active.logprobs {
                let logits = self.context.get_logits_ith(logits_index);
                let entry = token_logprob(self.model, logits, token, alternatives);
                active.pending_logprobs.push(entry);
            }
            let outcome = self.accept_token(index, token, sink);
            if let Some(reason) = outcome {
                self.finish(index, reason, sink);
            }
        }
        self.pacer.record(
            step_started.elapsed().as_secs_f64() * 1000.0,
            u32::try_from(prefill_tokens).unwrap_or(u32::MAX),
            decoding,
        );
    }

    /// Detokenizes and checks one sampled token; returns why to stop, if it should.
    fn accept_token(
        &mut self,
        index: usize,
        token: LlamaToken,
        sink: &mut dyn EventSink,
    ) -> Option<FinishReason> {
        let vocab = self.model.vocab();
        let active = self.slots[index].active.as_mut()?;
        if !active.ignore_eos && vocab.is_eog(token) {
            return Some(FinishReason::Stop);
        }
        let bytes = vocab.token_to_piece(token, false, None);
        let text = active.detokenizer.push(&bytes);
        let (visible, stopped) = match active.stop.push(&text) {
            StopOutcome::Continue(visible) => (visible, false),
            StopOutcome::Stopped(visible) => (visible, true),
        };
        emit_text(sink, active, visible);
        if stopped {
            active.detokenizer.discard_incomplete();
            return Some(FinishReason::Stop);
        }
        if active
            .max_tokens
            .is_some_and(|max| active.metrics.generated_tokens() >= max)
        {
            return Some(FinishReason::Length);
        }
        active.pending_token = Some(token);
        None
    }

    /// Ends the request in a slot; the slot keeps its cache for the next request.
    fn finish(&mut self, index: usize, reason: FinishReason, sink: &mut dyn EventSink) {
        let slot = &mut self.slots[index];
        let Some(mut active) = slot.active.take() else {
            return;
        };
        slot.last_used_step = self.step;
        active.detokenizer.discard_incomplete();
        let held = active.stop.flush();
        emit_text(sink, &mut active, held);
        // A prompt cut short by cancellation leaves positions beyond the cursor unwritten,
        // and `cached_tokens` records only what was decoded, so the cache stays consistent.
        let metrics = active.metrics.finish(Instant::now());
        sink.emit(WorkerEvent::Done {
            request_id: active.request_id,
            finish_reason: reason,
            metrics,
        });
    }

    fn fail_all_active(&mut self, message: &str, sink: &mut dyn EventSink) {
        for slot in &mut self.slots {
            if let Some(active) = slot.active.take() {
                sink.emit(error_event(
                    Some(active.request_id),
                    WorkerError::new(ErrorKind::DecodeFailed, message),
                ));
            }
            // The cache contents of a failed batch are unknown: start the sequence afresh.
            let _ = self.context.kv_cache_seq_rm(slot.seq_id, None, None);
            slot.cached_tokens.clear();
        }
    }
}

/// Sends visible text with the log-probabilities of the tokens behind it. Tokens whose text
/// ends up inside a stop string are never shown, and neither are their log-probabilities.
fn emit_text(sink: &mut dyn EventSink, active: &mut ActiveRequest, text: String) {
    if !text.is_empty() {
        sink.emit(WorkerEvent::Token {
            request_id: active.request_id,
            text,
            logprobs: std::mem::take(&mut active.pending_logprobs),
        });
    }
}

/// The answer to `Devices`: every device, and what became of each backend library.
fn devices_event(request_id: u64) -> WorkerEvent {
    load::route_llama_logs();
    WorkerEvent::Devices {
        request_id,
        devices: memory::backend_devices(),
        backends: crate::backends::backends().report.clone(),
    }
}
