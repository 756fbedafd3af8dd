//! The step: one `llama_decode` of a batch that holds the pending token of every decoding
//! sequence plus as much queued prompt as the prefill budget allows, then one sampled token
//! for every sequence that produced logits, streamed out through the UTF-8 accumulator and
//! the stop-string matcher. Also where a request ends (`finish`), whatever ended it. With
//! speculative decoding (`crate::speculative`), a decoding sequence's token is followed in the
//! batch by the guesses for the positions after it, verified when sampling.

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
        // Decoding sequences' tokens: one each, plus speculative guesses.
        let mut decode_tokens = 0u32;
        let decoding_sequences = u32::try_from(
            self.slots
                .iter()
                .filter(|slot| {
                    slot.active
                        .as_ref()
                        .is_some_and(|a| a.pending_token.is_some())
                })
                .count(),
        )
        .unwrap_or(u32::MAX);
        // Beside another decoding sequence, guesses are bounded by what they cost it.
        let mut guess_allowance = self.pacer.guess_budget(decoding_sequences) as usize;
        let mut step_guesses = 0u32;
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
            let start = slot.cached_tokens.len();
            let seq_id = slot.seq_id;
            let guesses = self.guesses(index, token, decode_tokens, guess_allowance);
            guess_allowance -= guesses.len();
            step_guesses += u32::try_from(guesses.len()).unwrap_or(u32::MAX);
            let logits_index = self.batch.n_tokens();
            let mut tokens = vec![token];
            tokens.extend_from_slice(&guesses);
            for (offset, token) in tokens.iter().enumerate() {
                let position = i32::try_from(start + offset).unwrap_or(i32::MAX);
                // `guesses` leaves room for every token in the batch.
                let _ = self.batch.add(*token, position, &[seq_id], true);
            }
            if let Some(active) = self.slots[index].active.as_mut() {
                active.logits_index = Some(logits_index);
                active.pending_token = None;
                active.guesses = guesses;
            }
            decode_tokens += u32::try_from(tokens.len()).unwrap_or(u32::MAX);
            added.push((index, tokens));
        }
        let budget_tokens = match self.fixed_prefill_chunk {
            Some(chunk) => policy::prefill_budget(self.n_batch, decode_tokens, chunk),
            None => self.pacer.budget(self.n_batch, decode_tokens),
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
            added.iter().map(|(_, tokens)| tokens.len()).sum::<usize>() - decode_tokens as usize;
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
                RequestSampler::Inline(_) => self.sample_verified(index, logits_index, now, sink),
            }
        }
        self.pacer.record(
            step_started.elapsed().as_secs_f64() * 1000.0,
            u32::try_from(prefill_tokens).unwrap_or(u32::MAX),
            decode_tokens - step_guesses,
            step_guesses,
        );
        // A usual grammar's token is ready within this wait and joins the next step like any
        // other; a slower one is collected between later steps (`collect_constrained_tokens`).
        let until = Instant::now() + CONSTRAINED_TOKEN_WAIT;
        for index in handed_over {
            self.collect_constrained_token(index, Some(until), sink);
        }
    }

    /// The guesses to verify after `token` in slot `index` this step: none unless the session
    /// speculates, the request may (`speculate`) and it samples on this thread; never more
    /// than the request may still generate, its sequence's context holds, the batch has
    /// room for beside one token for every other decoding sequence (`decode_tokens` are
    /// already in it), or `allowance` (what the pacer lets the step's guesses cost the other
    /// decoding sequences, `PrefillPacer::guess_budget`).
    fn guesses(
        &mut self,
        index: usize,
        token: LlamaToken,
        decode_tokens: u32,
        allowance: usize,
    ) -> Vec<LlamaToken> {
        if self.guesser.is_off() {
            return Vec::new();
        }
        let slot = &self.slots[index];
        let Some(active) = slot.active.as_ref() else {
            return Vec::new();
        };
        if !active.speculate || !matches!(active.sampler, RequestSampler::Inline(_)) {
            return Vec::new();
        }
        let others = self
            .slots
            .iter()
            .filter(|other| {
                other
                    .active
                    .as_ref()
                    .is_some_and(|a| a.pending_token.is_some())
            })
            .count()
            .saturating_sub(1);
        let batch_room =
            (self.n_batch as usize).saturating_sub(decode_tokens as usize + 1 + others);
        let context_room = self
            .n_ctx_per_sequence
            .saturating_sub(slot.cached_tokens.len() + 1);
        let generation_room = active.max_tokens.map_or(usize::MAX, |max| {
            (max.saturating_sub(active.metrics.generated_tokens()) as usize).saturating_sub(1)
        });
        let most = active
            .draft_length
            .get()
            .min(batch_room)
            .min(context_room)
            .min(generation_room)
            .min(allowance);
        if most == 0 {
            return Vec::new();
        }
        let mut history = Vec::with_capacity(slot.cached_tokens.len() + 1);
        history.extend_from_slice(&slot.cached_tokens);
        history.push(token);
        self.guesser.propose(index, &history, most)
    }

    /// Samples slot `index`'s tokens from the logits at `logits_index` on: one, and one more
    /// for each guess the request's own sampler agrees with (`speculative::acceptance`: the
    /// tokens follow the model's distribution, and greedy output is the same as without
    /// guesses). The rejected guesses' positions leave the sequence's cache.
    fn sample_verified(
        &mut self,
        index: usize,
        logits_index: i32,
        now: Instant,
        sink: &mut dyn EventSink,
    ) {
        let Some(active) = self.slots[index].active.as_mut() else {
            return;
        };
        let guesses = std::mem::take(&mut active.guesses);
        // Counted as they happen: the request may end on any of these tokens.
        active
            .metrics
            .speculated(u32::try_from(guesses.len()).unwrap_or(u32::MAX), 0);
        let mut accepted = 0usize;
        for offset in 0..=guesses.len() {
            let Some(active) = self.slots[index].active.as_mut() else {
                break;
            };
            let RequestSampler::Inline(sampler) = &mut active.sampler else {
                break;
            };
            let at = logits_index + i32::try_from(offset).unwrap_or(i32::MAX);
            let token = sampler.sample(&self.context, at);
            let logprob = active.logprobs.map(|alternatives| {
                let logits = self.context.get_logits_ith(at);
                token_logprob(self.model, logits, token, alternatives)
            });
            let agrees = guesses.get(offset) == Some(&token);
            if agrees {
                accepted += 1;
                active.metrics.speculated(0, 1);
            }
            self.take_token(index, token, logprob, now, sink);
            if !agrees {
                break;
            }
        }
        if guesses.is_empty() {
            return;
        }
        if let Some(active) = self.slots[index].active.as_mut() {
            active.draft_length.record(guesses.len(), accepted);
        }
        // The cache holds the fed token and every guess; keep the fed token and the accepted
        // guesses (tokens of the answer), remove the rest.
        let slot = &mut self.slots[index];
        let keep = slot.cached_tokens.len() - (guesses.len() - accepted);
        if keep < slot.cached_tokens.len() {
            let from = u32::try_from(keep).unwrap_or(u32::MAX);
            if self
                .context
                .kv_cache_seq_rm(slot.seq_id, Some(from), None)
                .is_err()
            {
                // A sequence whose cache cannot be cut is started afresh by its next request.
                let _ = self.context.kv_cache_seq_rm(slot.seq_id, None, None);
                slot.cached_tokens.clear();
                self.guesser.forget(index);
            } else {
                slot.cached_tokens.truncate(keep);
            }
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
            stop_sequence: active.stop.matched().map(str::to_string),
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
        for seq in 0..self.slots.len() {
            self.guesser.forget(seq);
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
