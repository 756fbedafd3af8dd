//! The step: one `llama_decode` of a batch that holds the pending token of every decoding
//! sequence plus as much queued prompt as the prefill budget allows, then one sampled token
//! for every sequence that produced logits, streamed out through the UTF-8 accumulator and
//! the stop-string matcher. Also where a request ends (`finish`), whatever ended it.

use std::time::Instant;

use hearth_protocol::{ErrorKind, FinishReason, WorkerError, WorkerEvent};
use llama_cpp_2::token::LlamaToken;

use super::{error_event, ActiveRequest, EventSink, Session};
use crate::policy;
use crate::sampling::token_logprob;
use crate::stop::StopOutcome;

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
