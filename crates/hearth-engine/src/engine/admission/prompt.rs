//! A queued request's prompt made ready to run: the request validated, its chat rendered
//! through the template and tokenized, and a chat that does not fit and allows it cut to its
//! system messages and newest turns (`fit_chat`, linear in the chat). A prompt that cannot
//! fit is refused with `ContextLengthExceeded`, naming its size when it is known.

use hearth_protocol::{
    ChatMessage, ContextOverflow, ErrorKind, GenerateRequest, Prompt, Role, TemplateSource,
    ThinkingSyntax, ToolDefinition, WorkerError,
};
use llama_cpp_2::token::LlamaToken;

use crate::engine::Session;
use crate::policy;

/// Messages measured between two looks for a cancellation while a chat is fitted.
const CANCEL_CHECK_INTERVAL: usize = 64;

/// Renders of the kept turns tried while fitting a chat before it is refused. The first or
/// second fits in practice (the second knows what the template adds per message).
const MAX_FIT_ROUNDS: usize = 8;

/// Why a queued request was not prepared: refused, or cancelled while it was.
pub(super) enum NotPrepared {
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
pub(super) struct PreparedPrompt {
    pub(super) tokens: Vec<LlamaToken>,
    pub(super) template_source: Option<TemplateSource>,
    pub(super) dropped_messages: u32,
    pub(super) thinking: Option<ThinkingSyntax>,
}

impl Session<'_> {
    /// The prompt text of a chat or text prompt (token prompts have none).
    pub(in crate::engine) fn render_prompt_text(
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
    pub(in crate::engine) fn tokenize_prompt(
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
    pub(super) fn prepare(
        &mut self,
        request: &GenerateRequest,
    ) -> Result<PreparedPrompt, NotPrepared> {
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
}
