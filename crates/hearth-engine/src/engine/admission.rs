//! Admission: between steps, queued requests become running ones. A request is validated
//! and its prompt tokenized (old chat turns dropped if it allows and needs it), its sampler
//! built, and it is given the free slot whose cache shares most of its prompt, reusing that
//! prefix (or a longer one copied from another sequence) so only the rest is computed.
//! Every request taken off the queue leaves with an event: `Started`, or an error.

use std::time::Instant;

use hearth_protocol::{
    CacheTier, ChatMessage, ContextOverflow, ErrorKind, FinishReason, GenerateRequest,
    MetricsRecorder, Prompt, Role, TemplateSource, ThinkingSyntax, ToolDefinition, WorkerError,
    WorkerEvent,
};
use llama_cpp_2::token::LlamaToken;

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

/// Messages measured between two looks for a cancellation while a chat is fitted.
const CANCEL_CHECK_INTERVAL: usize = 64;

/// Renders of the kept turns tried while fitting a chat before it is refused. The first or
/// second fits in practice (the second knows what the template adds per message).
const MAX_FIT_ROUNDS: usize = 8;

/// Why a queued request was not prepared: refused, or cancelled while it was.
enum NotPrepared {
    Refused(WorkerError),
    Cancelled,
}

impl From<WorkerError> for NotPrepared {
    fn from(error: WorkerError) -> Self {
        NotPrepared::Refused(error)
    }
}

/// A chat's messages are there and not too many ([`hearth_protocol::MAX_CHAT_MESSAGES`]).
fn check_chat(messages: &[ChatMessage]) -> Result<(), WorkerError> {
    if messages.is_empty() {
        return Err(WorkerError::new(
            ErrorKind::InvalidRequest,
            "messages is empty",
        ));
    }
    hearth_protocol::check_message_count(messages.len())
        .map_err(|message| WorkerError::new(ErrorKind::InvalidRequest, message))
}

/// What the chat template adds per message, learnt from a render of `total` tokens whose
/// messages' texts alone are `content` tokens.
fn per_message_overhead(total: usize, content: usize, messages: usize) -> usize {
    total.saturating_sub(content).div_ceil(messages.max(1))
}

/// A prompt ready to run: its tokens, and how it was made.
struct PreparedPrompt {
    tokens: Vec<LlamaToken>,
    template_source: Option<TemplateSource>,
    dropped_messages: u32,
    thinking: Option<ThinkingSyntax>,
}

impl Session<'_> {
    /// The prompt text of a chat or text prompt (token prompts have none).
    pub(super) fn render_prompt_text(
        &self,
        prompt: &Prompt,
        tools: &[ToolDefinition],
        enable_thinking: bool,
    ) -> Result<String, WorkerError> {
        match prompt {
            Prompt::Chat { messages } => {
                check_chat(messages)?;
                self.template
                    .render(self.model, messages, tools, enable_thinking)
            }
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
            Prompt::Text { .. } => Ok((
                self.tokenize_text(&self.render_prompt_text(prompt, &[], true)?),
                None,
            )),
            Prompt::Chat { .. } => Ok((
                self.tokenize_text(&self.render_prompt_text(prompt, &[], true)?),
                Some(self.template.source()),
            )),
        }
    }

    /// `ContextLengthExceeded`, saying `why`, with the prompt's token count when it is known.
    fn context_exceeded_because(&self, why: String, prompt_tokens: Option<usize>) -> WorkerError {
        let mut error = WorkerError::new(ErrorKind::ContextLengthExceeded, why);
        error.prompt_tokens = prompt_tokens.and_then(|tokens| u32::try_from(tokens).ok());
        error.n_ctx = u32::try_from(self.n_ctx_per_sequence).ok();
        error
    }

    fn context_exceeded(&self, prompt_tokens: usize) -> WorkerError {
        self.context_exceeded_because(
            format!(
                "the prompt has {prompt_tokens} tokens but the context holds {}",
                self.n_ctx_per_sequence
            ),
            Some(prompt_tokens),
        )
    }

    /// Validates a request and tokenizes its prompt, dropping the oldest turns of a chat that
    /// does not fit when the request allows it.
    fn prepare(&mut self, request: &GenerateRequest) -> Result<PreparedPrompt, NotPrepared> {
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
                )
                .into());
            }
        }
        if let (ContextOverflow::DropOldestTurns, Prompt::Chat { messages }) =
            (request.context_overflow, &request.prompt)
        {
            check_chat(messages)?;
            let (tokens, dropped_messages) = self.fit_chat(
                request.request_id,
                messages,
                &request.tools,
                request.max_tokens,
                request.enable_thinking,
            )?;
            return Ok(PreparedPrompt {
                tokens,
                template_source: Some(self.template.source()),
                dropped_messages,
                thinking: self.template.thinking(request.enable_thinking),
            });
        }
        let (tokens, template_source) = match &request.prompt {
            Prompt::Tokens { .. } => self.tokenize_prompt(&request.prompt)?,
            prompt => {
                let text =
                    self.render_prompt_text(prompt, &request.tools, request.enable_thinking)?;
                if text.len() > self.max_prompt_bytes {
                    // More bytes than the context could hold even if every token were the
                    // vocabulary's longest: not worth tokenizing.
                    let why = format!(
                        "the prompt is {} bytes, more than a context of {} tokens can hold",
                        text.len(),
                        self.n_ctx_per_sequence
                    );
                    return Err(self.context_exceeded_because(why, None).into());
                }
                let source = matches!(prompt, Prompt::Chat { .. }).then(|| self.template.source());
                (self.tokenize_text(&text), source)
            }
        };
        if tokens.is_empty() {
            return Err(WorkerError::new(ErrorKind::InvalidRequest, "the prompt is empty").into());
        }
        if tokens.len() > self.n_ctx_per_sequence {
            return Err(self.context_exceeded(tokens.len()).into());
        }
        let thinking = matches!(request.prompt, Prompt::Chat { .. })
            .then(|| self.template.thinking(request.enable_thinking))
            .flatten();
        Ok(PreparedPrompt {
            tokens,
            template_source,
            dropped_messages: 0,
            thinking,
        })
    }

    /// Fits a chat into the context (`ContextOverflow::DropOldestTurns`): taken whole if it
    /// fits, else the system messages and the newest turns that fit while leaving room for
    /// the answer (a quarter of the context, or `max_tokens` if smaller). Returns the tokens
    /// and how many messages were dropped.
    ///
    /// Linear in the chat: each message's text is tokenized at most once, newest first and
    /// only until the context is certainly full (older ones cannot be kept), and the cut is
    /// found by [`policy::keep_newest_turns`] over those counts plus what the template adds
    /// per message, learnt from the renders; only the kept turns are rendered, a few times at
    /// most, to check. Checks for its request's cancellation between messages.
    fn fit_chat(
        &mut self,
        request_id: u64,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        max_tokens: Option<u32>,
        enable_thinking: bool,
    ) -> Result<(Vec<LlamaToken>, u32), NotPrepared> {
        let n_ctx = self.n_ctx_per_sequence;
        let room_for_answer = max_tokens
            .map_or(n_ctx / 4, |max| max as usize)
            .min(n_ctx / 4);
        let limit = n_ctx - room_for_answer;
        let is_system: Vec<bool> = messages.iter().map(|m| m.role == Role::System).collect();
        let last = messages.len() - 1;
        // Tokens of each message's text; `usize::MAX` for those not measured, which cannot
        // be kept: beyond the context, or too many bytes for it.
        let mut content = vec![usize::MAX; messages.len()];
        let mut measured_other = 0usize;
        let always_kept = (0..messages.len()).filter(|&i| is_system[i] || i == last);
        let newest_first = (0..last).rev().filter(|&i| !is_system[i]);
        for (count, index) in always_kept.chain(newest_first).enumerate() {
            if count % CANCEL_CHECK_INTERVAL == CANCEL_CHECK_INTERVAL - 1
                && self.commands.cancel_requested(request_id)
            {
                return Err(NotPrepared::Cancelled);
            }
            let text = &messages[index].content;
            if text.len() <= self.max_prompt_bytes {
                content[index] = self.tokenize_plain(text);
            }
            if !is_system[index] && index != last {
                measured_other = measured_other.saturating_add(content[index]);
                if measured_other > n_ctx {
                    break;
                }
            }
        }
        let kept_cost = |kept: &[usize], overhead: usize| -> usize {
            kept.iter()
                .map(|&i| content[i].saturating_add(overhead))
                .fold(0, usize::saturating_add)
        };
        let all: Vec<usize> = (0..messages.len()).collect();
        // The whole chat, if it may fit the context: taken as it is when it does.
        let mut overhead = 0;
        if kept_cost(&all, 0) <= n_ctx {
            let tokens = self.render_kept(messages, tools, &all, enable_thinking)?;
            if tokens.len() <= n_ctx {
                return Ok((tokens, 0));
            }
            overhead = per_message_overhead(tokens.len(), kept_cost(&all, 0), all.len());
        }
        let mut budget = limit;
        let mut smallest_seen = None;
        for _ in 0..MAX_FIT_ROUNDS {
            let costs: Vec<usize> = content.iter().map(|c| c.saturating_add(overhead)).collect();
            let Some(kept) = policy::keep_newest_turns(&is_system, &costs, budget) else {
                break;
            };
            let tokens = self.render_kept(messages, tools, &kept, enable_thinking)?;
            if tokens.len() <= limit {
                let dropped = u32::try_from(messages.len() - kept.len()).unwrap_or(u32::MAX);
                return Ok((tokens, dropped));
            }
            smallest_seen = Some(tokens.len());
            let learnt = per_message_overhead(tokens.len(), kept_cost(&kept, 0), kept.len());
            if learnt > overhead {
                overhead = learnt;
            } else {
                // The estimate was right on average but these turns still overflow: ask for
                // fewer (strictly fewer tokens than this set's estimate).
                budget = kept_cost(&kept, overhead).saturating_sub(tokens.len() - limit);
            }
        }
        Err(match smallest_seen {
            Some(tokens) => self.context_exceeded(tokens),
            None => self.context_exceeded_because(
                format!(
                    "the chat's system messages and last message alone do not fit a context \
                     of {n_ctx} tokens"
                ),
                None,
            ),
        }
        .into())
    }

    /// Renders and tokenizes the kept messages.
    fn render_kept(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
        kept: &[usize],
        enable_thinking: bool,
    ) -> Result<Vec<LlamaToken>, WorkerError> {
        let candidate: Vec<ChatMessage> = kept.iter().map(|&i| messages[i].clone()).collect();
        let text = self
            .template
            .render(self.model, &candidate, tools, enable_thinking)?;
        Ok(self.tokenize_text(&text))
    }

    /// Tokens of a text on its own (no special tokens added or parsed).
    fn tokenize_plain(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len()
    }

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

    /// Keeps a reuse only when a sliding-window model's cache still holds the window before the
    /// cut ([`policy::window_allows_reuse`]); otherwise the sequence starts afresh.
    fn within_sliding_window(
        &mut self,
        index: usize,
        reused: usize,
        tier: CacheTier,
    ) -> (usize, CacheTier) {
        let Some(window) = self.sliding_window else {
            return (reused, tier);
        };
        let seq_id = self.slots[index].seq_id;
        let oldest = self.context.kv_cache_seq_pos_min(seq_id);
        if policy::window_allows_reuse(reused, oldest, window) {
            return (reused, tier);
        }
        tracing::debug!(
            reused,
            oldest,
            window,
            "the sliding-window cache lost positions the prompt needs: computed afresh"
        );
        let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
        self.slots[index].cached_tokens.clear();
        (0, CacheTier::None)
    }

    /// Makes the slot's sequence hold the longest cached prefix of the prompt: its own (cutting
    /// the divergent tail), a longer one copied from another sequence (a shared system
    /// prompt), or a longer one saved in a lower tier (host memory, disk), so those tokens are
    /// not computed again. A sequence the prompt would mostly overwrite is saved first.
    /// Returns how many tokens are reused and where they came from.
    fn reuse_cached_prefix(
        &mut self,
        index: usize,
        own: usize,
        prompt: &[LlamaToken],
        reuse: bool,
    ) -> (usize, CacheTier) {
        let seq_id = self.slots[index].seq_id;
        if !reuse {
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
            return (0, CacheTier::None);
        }
        self.save_before_overwrite(index, own);
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
        let in_slots = donor.map_or(own, |(_, shared)| shared.max(own));
        if let Some(restored) = self.restore_saved(index, prompt, in_slots) {
            return restored;
        }
        // A restore that failed leaves the slot empty.
        let own = own.min(self.slots[index].cached_tokens.len());
        let served = |reused: usize| {
            let tier = if reused > 0 {
                CacheTier::Slot
            } else {
                CacheTier::None
            };
            (reused, tier)
        };
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
                return served(shared);
            }
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
            return served(0);
        }
        let keep = u32::try_from(own).unwrap_or(0);
        if self
            .context
            .kv_cache_seq_rm(seq_id, Some(keep), None)
            .is_err()
        {
            let _ = self.context.kv_cache_seq_rm(seq_id, None, None);
            self.slots[index].cached_tokens.clear();
            return served(0);
        }
        self.slots[index].cached_tokens.truncate(own);
        served(own)
    }
}
