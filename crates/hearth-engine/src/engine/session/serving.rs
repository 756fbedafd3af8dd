//! A loaded model's session at work: built from the load, it runs the loop that takes
//! requests off the channel between steps (answering those that need no slot, queueing
//! `Generate` for admission, cancelling) until a new load or a shutdown ends it, and then
//! answers what is left.

use std::collections::VecDeque;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::{
    ErrorKind, FinishReason, LoadParams, Prompt, WorkerError, WorkerEvent, WorkerRequest,
};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::{devices_event, HELPER_POLL_INTERVAL};
use crate::constraint::GrammarBuilder;
use crate::engine::embedding::Embedder;
use crate::engine::tiers::Tiers;
use crate::engine::{
    cancelled_event, error_event, stats_event, Commands, EventSink, QueuedRequest, SchedulerGauges,
    SchedulerSnapshot, Session, SessionEnd, Slot,
};
use crate::memory;
use crate::policy::PrefillPacer;
use crate::speculative::Guesser;
use crate::template::ChatTemplate;

impl<'model> Session<'model> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        model: &'model LlamaModel,
        context: LlamaContext<'model>,
        template: ChatTemplate,
        grammars: GrammarBuilder,
        embedder: Embedder<'model>,
        commands: &'model Commands,
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
            .and_then(|value| value.trim().parse::<u32>().ok())
            .filter(|window| *window > 0);
        let partial_cache_reuse = !model.is_recurrent() && !model.is_hybrid();
        let vocab = model.vocab();
        let longest_token = (0..model.n_vocab())
            .map(|id| vocab.token_to_piece(LlamaToken(id), true, None).len())
            .max()
            .unwrap_or(1)
            .max(1);
        Self {
            model,
            context,
            template,
            grammars,
            embedder,
            slots,
            queue: VecDeque::new(),
            batch: LlamaBatch::new(n_batch as usize, i32::try_from(n_parallel).unwrap_or(1)),
            n_batch,
            n_ctx_per_sequence,
            max_prompt_bytes: n_ctx_per_sequence.saturating_mul(longest_token),
            commands,
            fixed_prefill_chunk: params.prefill_chunk,
            pacer: PrefillPacer::new(params.max_decode_slowdown),
            prefix_cache: params.prefix_cache,
            partial_cache_reuse,
            sliding_window,
            max_queue: params.max_queue as usize,
            gauges,
            decoded_batches: 0,
            step: 0,
            admissions: 0,
            guesser: Guesser::Off,
            max_draft_tokens: params.max_draft_tokens,
            tiers: Tiers::none(),
        }
    }

    /// Whether a step has work: a running request with a token or prompt to compute, or a
    /// queued one that may take a free slot.
    pub(super) fn can_step(&self) -> bool {
        let computing = self.slots.iter().any(|slot| {
            slot.active.as_ref().is_some_and(|active| {
                active.pending_token.is_some() || active.prefill_cursor < active.prompt.len()
            })
        });
        let admitting = self.slots.iter().any(|slot| slot.active.is_none())
            && self.queue.iter().any(QueuedRequest::is_admissible);
        computing || admitting || self.embedder.has_work()
    }

    /// Whether something is in progress off this thread: a grammar being built, a constrained
    /// token being sampled.
    pub(super) fn awaits_helpers(&self) -> bool {
        !self.queue.is_empty() || self.slots.iter().any(|slot| slot.active.is_some())
    }

    pub(super) fn run(&mut self, sink: &mut dyn EventSink) -> SessionEnd {
        let commands = self.commands;
        loop {
            self.gauges.publish(self.snapshot());
            // Busy: take what has arrived, then step. Waiting only for helper threads (a
            // grammar being built, a constrained token being sampled): wait for requests a few
            // milliseconds at a time, looking for their results in between. Idle: block until
            // something arrives.
            let mut next = if self.can_step() {
                None
            } else if self.awaits_helpers() {
                match commands.recv_timeout(HELPER_POLL_INTERVAL) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(WorkerRequest::Shutdown),
                }
            } else {
                match commands.recv_timeout(Duration::from_secs(3600)) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        self.persist_for_next_session();
                        return SessionEnd::Shutdown;
                    }
                }
            };
            // Each request is handled as it is taken off the channel, so whatever follows a
            // `Load` stays on the channel for the next model (or for the error of a failed
            // load) instead of being dropped with this session.
            loop {
                let request = match next.take() {
                    Some(request) => request,
                    None => match commands.try_recv() {
                        Ok(request) => request,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => WorkerRequest::Shutdown,
                    },
                };
                if let Some(end) = self.handle_request(request, sink) {
                    self.abandon_all(sink, &end);
                    self.persist_for_next_session();
                    return end;
                }
            }
            self.collect_constrained_tokens(sink);
            self.advance_grammars(sink);
            self.admit_queued(sink);
            self.gauges.publish(self.snapshot());
            self.step(sink);
            self.embed_step(sink);
            self.gauges.publish(self.snapshot());
        }
    }

    pub(in crate::engine) fn snapshot(&self) -> SchedulerSnapshot {
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

    pub(super) fn handle_request(
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
                    self.queue.push_back(QueuedRequest::new(request));
                }
            }
            WorkerRequest::Embed(request) => self.queue_embedding(request, sink),
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
                    self.render_prompt_text(&prompt, &[], true),
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

    pub(super) fn cancel(&mut self, request_id: u64, sink: &mut dyn EventSink) {
        if self.cancel_embedding(request_id, sink) {
            return;
        }
        if let Some(position) = self
            .queue
            .iter()
            .position(|q| q.request.request_id == request_id)
        {
            if let Some(queued) = self.queue.remove(position) {
                sink.emit(cancelled_event(request_id, queued.arrived_at));
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
    pub(super) fn abandon_all(&mut self, sink: &mut dyn EventSink, end: &SessionEnd) {
        let message = match end {
            SessionEnd::Shutdown => "the engine is shutting down",
            SessionEnd::Load { .. } => "the model was unloaded for another",
        };
        let mut ids: Vec<u64> = self.queue.drain(..).map(|q| q.request.request_id).collect();
        ids.extend(self.embedder.drain_ids());
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
}
