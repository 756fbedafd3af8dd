//! The step: one `llama_decode` of a batch that holds the pending token of every decoding
//! sequence plus as much queued prompt as the prefill budget allows, then one sampled token
//! for every sequence that produced logits, streamed out through the UTF-8 accumulator and
//! the stop-string matcher. Also where a request ends (`finish`), whatever ended it.

use std::time::{Duration, Instant};

use hearth_protocol::{ErrorKind, FinishReason, TokenLogprob, WorkerError, WorkerEvent};
use llama_cpp_2::token::LlamaToken;

use super::{error_event, ActiveRequest, EventSink, RequestSampler, Session};
use crate::constraint::{too_expensive, MAX_GRAMMAR_TOKEN_TIME};
use crate::policy;
use crate::sampling::token_logprob;
use crate::stop::StopOutcome;

/// How long a step waits for the constrained tokens it handed over. A usual grammar costs about
/// 20 ms a token on a 2-core CPU; this bounds what a slower one adds to every stream's step.
const CONSTRAINED_TOKEN_WAIT: Duration = Duration::from_millis(50);

impl Session<'_> {
    /// Builds and decodes one batch, then samples for every sequence that produced logits.
    pub(super) fn step(&mut self, sink: &mut dyn EventSink) {
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
        // Constrained requests' logits go to their sampling threads first, so they work while
        // this thread samples the others.
        let mut handed_over = Vec::new();
        for index in 0..self.slots.len() {
            let Some(active) = self.slots[index].active.as_mut() else {
                continue;
            };
            let Some(logits_index) = active.logits_index.take() else {
                continue;
            };
            match &mut active.sampler {
                RequestSampler::Threaded(thread) => {
                    thread.send(self.context.get_logits_ith(logits_index).to_vec());
                    handed_over.push(index);
                }
                RequestSampler::Inline(sampler) => {
                    let token = sampler.sample(&self.context, logits_index);
                    let logprob = active.logprobs.map(|alternatives| {
                        let logits = self.context.get_logits_ith(logits_index);
                        token_logprob(self.model, logits, token, alternatives)
                    });
                    self.take_token(index, token, logprob, now, sink);
                }
            }
        }
        self.pacer.record(
            step_started.elapsed().as_secs_f64() * 1000.0,
            u32::try_from(prefill_tokens).unwrap_or(u32::MAX),
            decoding,
        );
        // A usual grammar's token is ready within this wait and joins the next step like any
        // other; a slower one is collected between later steps (`collect_constrained_tokens`).
        let until = Instant::now() + CONSTRAINED_TOKEN_WAIT;
        for index in handed_over {
            self.collect_constrained_token(index, Some(until), sink);
        }
    }

    /// Takes the tokens that constrained requests' threads have sampled since the last step,
    /// and ends any request whose token is overdue. Called between steps.
    pub(super) fn collect_constrained_tokens(&mut self, sink: &mut dyn EventSink) {
        for index in 0..self.slots.len() {
            self.collect_constrained_token(index, None, sink);
        }
    }

    /// Takes the token of the constrained request in slot `index` if it is ready by `until`
    /// (`None`: now); ends the request if its grammar failed or is too slow.
    fn collect_constrained_token(
        &mut self,
        index: usize,
        until: Option<Instant>,
        sink: &mut dyn EventSink,
    ) {
        let Some(ActiveRequest {
            sampler: RequestSampler::Threaded(thread),
            logprobs: thread_logprobs,
            ..
        }) = self.slots[index].active.as_mut()
        else {
            return;
        };
        let thread_logprobs = *thread_logprobs;
        let Some(sampled) = thread.take(until) else {
            if let Some(waited) = thread.overdue() {
                self.fail(index, too_expensive(waited, false), sink);
            }
            return;
        };
        match sampled.token {
            Err(error) => self.fail(index, error, sink),
            Ok(_) if sampled.took > MAX_GRAMMAR_TOKEN_TIME => {
                self.fail(index, too_expensive(sampled.took, false), sink);
            }
            Ok(token) => {
                let logprob = thread_logprobs.map(|alternatives| {
                    token_logprob(self.model, &sampled.logits, token, alternatives)
                });
                self.take_token(index, token, logprob, Instant::now(), sink);
            }
        }
    }

    /// Records a sampled token (and its log-probabilities, if asked for), streams its text, and
    /// ends the request if the token ends it.
    fn take_token(
        &mut self,
        index: usize,
        token: LlamaToken,
        logprob: Option<TokenLogprob>,
        now: Instant,
        sink: &mut dyn EventSink,
    ) {
        let Some(active) = self.slots[index].active.as_mut() else {
            return;
        };
        active.metrics.token_generated(now);
        active.pending_logprobs.extend(logprob);
        if let Some(reason) = self.accept_token(index, token, sink) {
            self.finish(index, reason, sink);
        }
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
    pub(super) fn finish(&mut self, index: usize, reason: FinishReason, sink: &mut dyn EventSink) {
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

    /// Ends the request in a slot with an error; the slot keeps its cache.
    fn fail(&mut self, index: usize, error: WorkerError, sink: &mut dyn EventSink) {
        let slot = &mut self.slots[index];
        if let Some(active) = slot.active.take() {
            slot.last_used_step = self.step;
            sink.emit(error_event(Some(active.request_id), error));
        }
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

/// Sends visible text with the log-probabilities of every token sampled since the last event,
/// so the entries need not line up one to one with the text. A token whose text is held back
/// (part of a UTF-8 character, or text that may begin a stop string) keeps its entry waiting
/// for the next text that goes out. So when a stop string matches, the text before it carries
/// the entries of the tokens that formed the stop string as well; only when no text precedes
/// the stop string are those entries dropped with it. Likewise an end-of-generation token's
/// entry goes out with the held text that `finish` flushes, or is dropped if there is none.
fn emit_text(sink: &mut dyn EventSink, active: &mut ActiveRequest, text: String) {
    if !text.is_empty() {
        sink.emit(WorkerEvent::Token {
            request_id: active.request_id,
            text,
            logprobs: std::mem::take(&mut active.pending_logprobs),
        });
    }
}
