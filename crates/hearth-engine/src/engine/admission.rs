//! Admission: between steps, queued requests become running ones. A request is validated
//! and its prompt tokenized (old chat turns dropped if it allows and needs it), its sampler
//! built, and it is given the free slot whose cache shares most of its prompt, reusing that
//! prefix (or a longer one copied from another sequence) so only the rest is computed.
//! Every request taken off the queue leaves with an event: `Started`, or an error.

use std::time::Instant;

use hearth_protocol::{
    ChatMessage, ContextOverflow, ErrorKind, FinishReason, GenerateRequest, MetricsRecorder,
    Prompt, Role, TemplateSource, WorkerError, WorkerEvent,
};
use llama_cpp_2::token::LlamaToken;

use super::{error_event, ActiveRequest, EventSink, Session};
use crate::policy::{self, FreeSlot};
use crate::sampling::build_sampler;
use crate::stop::StopMatcher;
use crate::utf8::Utf8Accumulator;

/// A prompt ready to run: its tokens, and how it was made.
struct PreparedPrompt {
    tokens: Vec<LlamaToken>,
    template_source: Option<TemplateSource>,
    dropped_messages: u32,
}

impl Session<'_> {
    /// The prompt text of a chat or text prompt (token prompts have none).
    pub(super) fn render_prompt_text(&self, prompt: &Prompt) -> Result<String, WorkerError> {
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
    pub(super) fn tokenize_prompt(
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
    pub(super) fn admit_queued(&mut self, sink: &mut dyn EventSink) {
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
                // Not expected while the loop's guard holds, but a request already taken off
                // the queue must not vanish without a word.
                sink.emit(error_event(
                    Some(request_id),
                    WorkerError::new(ErrorKind::QueueFull, "no free slot for the request"),
                ));
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
            .filter(|(_, shared)| policy::worth_copying(*shared, own));
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
}
