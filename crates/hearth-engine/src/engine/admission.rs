//! Admission: between steps, queued requests become running ones. A request is validated
//! and its prompt tokenized (old chat turns dropped if it allows and needs it), its sampler
//! built, and it is given the free slot whose cache shares most of its prompt, reusing that
//! prefix (or a longer one copied from another sequence) so only the rest is computed.
//! Every request taken off the queue leaves with an event: `Started`, or an error.//!
//! Its parts: `prompt` validates a request and makes its prompt's tokens (fitting a long
//! chat), `prefix_reuse` starts the slot from the longest cached prefix; this file moves
//! grammars along and admits requests in order.

mod prefix_reuse;
mod prompt;

use std::time::Instant;

use hearth_protocol::{ErrorKind, FinishReason, MetricsRecorder, WorkerError, WorkerEvent};
use llama_cpp_2::token::LlamaToken;

use self::prompt::NotPrepared;
use super::{
    cancelled_event, error_event, ActiveRequest, EventSink, GrammarState, QueuedRequest,
    RequestSampler, Session,
};
use crate::constraint::{
    check_constraint, invalid_constraint, no_free_builder, GRAMMAR_BUILD_DEADLINE,
};
use crate::policy::{self, FreeSlot};
use crate::sampling::build_sampler;
use crate::speculative::DraftLength;
use crate::stop::StopMatcher;
use crate::utf8::Utf8Accumulator;

impl Session<'_> {
    /// Moves constrained requests' grammars along, between steps: collects the samplers built
    /// since the last step, refuses requests whose grammar missed its deadline or fails the
    /// cheap checks, and starts builds for waiting requests while builders are free. Nothing
    /// here waits for a build.
    pub(super) fn advance_grammars(&mut self, sink: &mut dyn EventSink) {
        for (job, built) in self.grammars.finished() {
            let Some(position) = self.queue.iter().position(
                |q| matches!(q.grammar, GrammarState::Building { job: building, .. } if building == job),
            ) else {
                // Its request was cancelled or timed out meanwhile.
                continue;
            };
            match built {
                Ok(sampler) => self.queue[position].grammar = GrammarState::Ready(sampler),
                Err(error) => self.refuse_queued(position, error, sink),
            }
        }
        let now = Instant::now();
        while let Some(position) = self.queue.iter().position(
            |q| matches!(q.grammar, GrammarState::Building { deadline, .. } if deadline <= now),
        ) {
            let error = invalid_constraint(format!(
                "building its grammar took longer than {} s; simplify the schema",
                GRAMMAR_BUILD_DEADLINE.as_secs()
            ));
            self.refuse_queued(position, error, sink);
        }
        let mut position = 0;
        while position < self.queue.len() {
            let queued = &self.queue[position];
            let (GrammarState::Waiting, Some(constraint)) =
                (&queued.grammar, queued.request.constraint.as_ref())
            else {
                position += 1;
                continue;
            };
            if let Err(error) = check_constraint(constraint) {
                self.refuse_queued(position, error, sink);
                continue;
            }
            if !self.grammars.has_capacity() {
                // Every builder is busy (builds past their deadline run on until llama.cpp
                // returns): wait, but not for ever.
                let waited = queued.arrived_at.elapsed();
                if waited >= self.grammars.wait_deadline() {
                    self.refuse_queued(position, no_free_builder(waited), sink);
                    continue;
                }
                position += 1;
                continue;
            }
            match self.grammars.start(constraint.clone()) {
                Ok(job) => {
                    self.queue[position].grammar = GrammarState::Building {
                        job,
                        deadline: Instant::now() + GRAMMAR_BUILD_DEADLINE,
                    };
                    position += 1;
                }
                Err(error) => self.refuse_queued(position, error, sink),
            }
        }
    }

    /// Removes a queued request with an error.
    fn refuse_queued(&mut self, position: usize, error: WorkerError, sink: &mut dyn EventSink) {
        if let Some(queued) = self.queue.remove(position) {
            sink.emit(error_event(Some(queued.request.request_id), error));
        }
    }

    /// Moves queued requests into free slots, each to the slot with the longest shared prefix.
    pub(super) fn admit_queued(&mut self, sink: &mut dyn EventSink) {
        while self.slots.iter().any(|slot| slot.active.is_none()) {
            // The oldest request that may run: one whose grammar is still being built waits
            // without holding up those behind it.
            let Some(position) = self.queue.iter().position(QueuedRequest::is_admissible) else {
                return;
            };
            let Some(queued) = self.queue.remove(position) else {
                return;
            };
            let request = queued.request;
            let request_id = request.request_id;
            let prepared = match self.prepare(&request) {
                Ok(prepared) => prepared,
                Err(NotPrepared::Refused(error)) => {
                    sink.emit(error_event(Some(request_id), error));
                    continue;
                }
                Err(NotPrepared::Cancelled) => {
                    sink.emit(cancelled_event(request_id, queued.arrived_at));
                    continue;
                }
            };
            let grammar = match queued.grammar {
                GrammarState::Ready(grammar) => Some(grammar),
                _ => None,
            };
            let constrained = grammar.is_some();
            let chain = build_sampler(
                self.model,
                &request.sampling,
                grammar,
                &prepared.tokens,
                i32::try_from(self.n_ctx_per_sequence).unwrap_or(i32::MAX),
            );
            let sampler = if constrained {
                match self.grammars.sampler_thread(chain) {
                    Ok(thread) => RequestSampler::Threaded(thread),
                    Err(error) => {
                        sink.emit(error_event(Some(request_id), error));
                        continue;
                    }
                }
            } else {
                RequestSampler::Inline(chain)
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
                // Not expected while the loop's guard holds, but a request already taken off
                // the queue must not vanish without a word.
                sink.emit(error_event(
                    Some(request_id),
                    WorkerError::new(ErrorKind::QueueFull, "no free slot for the request"),
                ));
                return;
            };
            let (reused, tier) =
                self.reuse_cached_prefix(choice.index, choice.reused_tokens, &prompt, reuse);
            let (reused, tier) = self.within_sliding_window(choice.index, reused, tier);
            let mut metrics = MetricsRecorder::new(queued.arrived_at);
            metrics.served_from(tier);
            let prompt_tokens = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
            let cached = u32::try_from(reused).unwrap_or(0);
            metrics.admitted(Instant::now(), prompt_tokens, cached);
            let started = WorkerEvent::Started {
                request_id,
                prompt_tokens,
                cached_prompt_tokens: cached,
                template_source: prepared.template_source,
                dropped_messages: prepared.dropped_messages,
                thinking: prepared.thinking,
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
                guesses: Vec::new(),
                draft_length: DraftLength::new(self.max_draft_tokens),
                speculate: request.speculate,
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
}
