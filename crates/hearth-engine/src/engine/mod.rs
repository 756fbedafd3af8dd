//! The engine thread: owns the llama.cpp model and context (the context is not `Send`), and
//! runs the scheduler loop over admitted requests, each step one batch.
//!
//! Everything crosses to this thread by message: [`EngineHandle::submit`] sends a
//! [`WorkerRequest`], and the thread reports [`WorkerEvent`]s to an [`EventSink`]. A step
//! decodes one token for every running sequence plus a bounded chunk of pending prompt, so a
//! long prompt never stalls other streams; new requests join and cancellations land between
//! steps.
//!
//! This file holds the handle other threads use and the scheduler's state (`Session` and its
//! slots). The work on that state is split along its seams, each in an `impl Session` of its
//! own: `session` loads a model and runs the loop that takes requests off the channel,
//! `admission` turns queued requests into running ones, `step` decodes one batch and
//! streams what it produced, and `embedding` computes embeddings in a context of its own. Admission and the step meet only in the slots: admission puts an
//! `ActiveRequest` in a free one, the step runs what the slots hold, and `finish` (in `step`)
//! ends a request for either.

mod admission;
mod embedding;
mod session;
mod step;
mod tiers;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hearth_protocol::{
    FinishReason, GenerateRequest, LoadParams, MetricsRecorder, TokenLogprob, WorkerError,
    WorkerEvent, WorkerRequest,
};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::constraint::{ConstrainedSampler, GrammarBuilder, GrammarLimits};
use crate::policy::PrefillPacer;
use crate::speculative::{DraftLength, Guesser};
use crate::stop::StopMatcher;
use crate::template::ChatTemplate;
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

/// How an engine thread runs, beyond what each load's parameters say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Set the process's memory ceiling before each load (the worker process only).
    pub memory_ceiling: bool,
    /// Grammar builders and how long a constrained request waits for one.
    pub grammar: GrammarLimits,
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
        Self::spawn_with_options(sink, EngineOptions::default())
    }

    /// Starts the engine thread of the worker process, which also sets the process's memory
    /// ceiling before each model load ([`crate::ceiling`]).
    pub fn spawn_with_memory_ceiling(sink: impl EventSink) -> std::io::Result<Self> {
        Self::spawn_with_options(
            sink,
            EngineOptions {
                memory_ceiling: true,
                ..EngineOptions::default()
            },
        )
    }

    /// Starts the engine thread with `options`.
    pub fn spawn_with_options(
        sink: impl EventSink,
        options: EngineOptions,
    ) -> std::io::Result<Self> {
        let (commands, receiver) = mpsc::channel();
        let gauges = Arc::new(SchedulerGauges::default());
        let thread_gauges = gauges.clone();
        let thread = std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || {
                session::engine_main(receiver, Box::new(sink), &thread_gauges, options)
            })?;
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

/// The end of a request cancelled before it got a slot.
fn cancelled_event(request_id: u64, arrived_at: Instant) -> WorkerEvent {
    WorkerEvent::Done {
        request_id,
        finish_reason: FinishReason::Cancelled,
        metrics: MetricsRecorder::new(arrived_at).finish(Instant::now()),
        stop_sequence: None,
    }
}

/// The engine thread's channel. A long preparation looks ahead in it for a cancellation of its
/// request; what it reads is kept, in order, for the loop (and, if the session ends first, for
/// the next one: nothing sent behind a `Load` is lost).
struct Commands {
    receiver: Receiver<WorkerRequest>,
    read_ahead: RefCell<VecDeque<WorkerRequest>>,
}

impl Commands {
    fn new(receiver: Receiver<WorkerRequest>) -> Self {
        Self {
            receiver,
            read_ahead: RefCell::new(VecDeque::new()),
        }
    }

    fn take_read_ahead(&self) -> Option<WorkerRequest> {
        self.read_ahead.borrow_mut().pop_front()
    }

    fn recv(&self) -> Result<WorkerRequest, mpsc::RecvError> {
        match self.take_read_ahead() {
            Some(request) => Ok(request),
            None => self.receiver.recv(),
        }
    }

    fn recv_timeout(&self, timeout: Duration) -> Result<WorkerRequest, mpsc::RecvTimeoutError> {
        match self.take_read_ahead() {
            Some(request) => Ok(request),
            None => self.receiver.recv_timeout(timeout),
        }
    }

    fn try_recv(&self) -> Result<WorkerRequest, mpsc::TryRecvError> {
        match self.take_read_ahead() {
            Some(request) => Ok(request),
            None => self.receiver.try_recv(),
        }
    }

    /// Whether a cancellation of `request_id` has arrived (reading ahead what has).
    fn cancel_requested(&self, request_id: u64) -> bool {
        let mut read_ahead = self.read_ahead.borrow_mut();
        read_ahead.extend(self.receiver.try_iter());
        read_ahead.iter().any(
            |request| matches!(request, WorkerRequest::Cancel { request_id: id } if *id == request_id),
        )
    }
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

/// A request that holds a slot.
struct ActiveRequest {
    request_id: u64,
    prompt: Vec<LlamaToken>,
    /// Index of the next prompt token to compute.
    prefill_cursor: usize,
    sampler: RequestSampler,
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
    /// Log-probabilities of the tokens sampled since the last `Token` event, none of whose
    /// text has been shown yet (see `step::emit_text`).
    pending_logprobs: Vec<TokenLogprob>,
    /// Speculative decoding: the guesses in the current batch after `pending_token`, and how
    /// many to guess next.
    guesses: Vec<LlamaToken>,
    draft_length: DraftLength,
    /// Whether the request may speculate (`GenerateRequest::speculate`).
    speculate: bool,
}

/// Where a request's tokens are sampled: on the engine thread, or (a request with an output
/// constraint) on a thread of its own, since a grammar's cost has no bound the engine could
/// check beforehand.
enum RequestSampler {
    Inline(LlamaSampler),
    Threaded(ConstrainedSampler),
}

/// One sequence of the shared context.
struct Slot {
    seq_id: i32,
    /// The tokens whose keys and values this sequence holds, in position order.
    cached_tokens: Vec<LlamaToken>,
    active: Option<ActiveRequest>,
    last_used_step: u64,
}

/// A request waiting for a free slot (and for its grammar, if it has a constraint).
struct QueuedRequest {
    request: GenerateRequest,
    arrived_at: Instant,
    grammar: GrammarState,
}

/// Where a queued request's grammar sampler is: it joins a slot only once it is `Ready` (or
/// needs none).
enum GrammarState {
    /// No output constraint.
    NotNeeded,
    /// Waiting for a free grammar builder.
    Waiting,
    /// Being built on a helper thread; refused if not done by the deadline.
    Building {
        job: u64,
        deadline: Instant,
    },
    Ready(LlamaSampler),
}

impl QueuedRequest {
    fn new(request: GenerateRequest) -> Self {
        let grammar = if request.constraint.is_some() {
            GrammarState::Waiting
        } else {
            GrammarState::NotNeeded
        };
        Self {
            request,
            arrived_at: Instant::now(),
            grammar,
        }
    }

    /// Whether it may take a slot now.
    fn is_admissible(&self) -> bool {
        matches!(
            self.grammar,
            GrammarState::NotNeeded | GrammarState::Ready(_)
        )
    }
}

/// The scheduler of one loaded model; the engine thread owns it, and nothing else touches it.
struct Session<'model> {
    model: &'model LlamaModel,
    context: LlamaContext<'model>,
    template: ChatTemplate,
    /// Builds the grammar samplers of constrained requests off this thread.
    grammars: GrammarBuilder,
    /// Embedding requests and the context that computes them (`embedding`).
    embedder: embedding::Embedder<'model>,
    slots: Vec<Slot>,
    queue: VecDeque<QueuedRequest>,
    batch: LlamaBatch<'static>,
    n_batch: u32,
    n_ctx_per_sequence: usize,
    /// More prompt bytes than this cannot fit a sequence's context even if every token were
    /// the vocabulary's longest: such a prompt is refused without being tokenized (about
    /// 3 MB/s on a 2-core CPU, on this thread).
    max_prompt_bytes: usize,
    /// The engine's channel.
    commands: &'model Commands,
    /// A fixed prefill chunk while others decode; `None`: paced by measured step times.
    fixed_prefill_chunk: Option<u32>,
    pacer: PrefillPacer,
    prefix_cache: bool,
    /// Recurrent and hybrid models keep one state per sequence, not one per position, so
    /// their sequences cannot be cut at an arbitrary position: prompts are computed in full.
    partial_cache_reuse: bool,
    /// A sliding-window model's window (`None`: none). Its cache is full-size
    /// ([`hearth_protocol::SWA_FULL`]), so a cut sequence keeps what its next tokens attend
    /// to; each reuse is checked against [`policy::window_allows_reuse`] all the same.
    sliding_window: Option<u32>,
    max_queue: usize,
    /// Where the counters are published for the worker's stdin thread.
    gauges: Arc<SchedulerGauges>,
    /// Steps that decoded a batch (a step with nothing to compute is not counted).
    decoded_batches: u64,
    step: u64,
    admissions: u64,
    /// Speculative decoding's guesser (`Off`: one token per step).
    guesser: Guesser<'model>,
    /// The bound of every request's adaptive draft length.
    max_draft_tokens: u32,
    /// Where sequences pushed out of their slots are kept (host memory, disk).
    tiers: tiers::Tiers,
}
