//! Embeddings on the engine thread: a second llama.cpp context on the loaded model, made
//! with embeddings on and the model's pooling (mean for a model that names none, such as a
//! chat model), created the first time a request needs it and dropped with the session.
//!
//! Requests wait in a queue of their own; each turn of the engine loop decodes one batch of
//! the front request's inputs, one sequence per input, at most [`EMBEDDING_SEQUENCES`] of them
//! and, while streams are decoding, no more tokens than the prefill pacer would give a prompt
//! (one input always goes). So a batch of 2,048 texts takes its turns beside the running
//! streams instead of stopping them, and a cancellation lands between two batches. Texts are
//! tokenized as they are batched, never all at once, and a text with more bytes than its
//! input could hold is refused untokenized.

use std::collections::VecDeque;
use std::time::Instant;

use hearth_protocol::{
    l2_normalize, EmbedRequest, EmbeddingInput, ErrorKind, WorkerError, WorkerEvent,
    MAX_EMBEDDING_INPUT_TOKENS,
};
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::{cancelled_event, error_event, EventSink, Session};
use crate::load;

/// The most inputs decoded together (sequences of the embedding context).
pub(super) const EMBEDDING_SEQUENCES: u32 = 16;

/// One embedding request in the queue.
pub(super) struct EmbeddingJob {
    request_id: u64,
    inputs: Vec<EmbeddingInput>,
    /// The next input to embed.
    next_input: usize,
    prompt_tokens: u32,
    arrived_at: Instant,
}

/// The embedding side of a session: its queue and, once needed, its context.
pub(super) struct Embedder<'model> {
    /// The generation context's parameters (threads, flash attention, KV type), which the
    /// embedding context starts from.
    base_params: LlamaContextParams,
    context: Option<EmbeddingContext<'model>>,
    jobs: VecDeque<EmbeddingJob>,
}

struct EmbeddingContext<'model> {
    context: LlamaContext<'model>,
    batch: LlamaBatch<'static>,
    /// The most tokens per input, and per batch.
    input_tokens: usize,
}

impl Embedder<'_> {
    pub(super) fn new(base_params: LlamaContextParams) -> Self {
        Self {
            base_params,
            context: None,
            jobs: VecDeque::new(),
        }
    }

    pub(super) fn has_work(&self) -> bool {
        !self.jobs.is_empty()
    }

    pub(super) fn queued(&self) -> usize {
        self.jobs.len()
    }

    /// The ids of every queued request, removed (the session is ending).
    pub(super) fn drain_ids(&mut self) -> Vec<u64> {
        self.jobs.drain(..).map(|job| job.request_id).collect()
    }

    fn contains(&self, request_id: u64) -> bool {
        self.jobs.iter().any(|job| job.request_id == request_id)
    }
}

/// The pooling llama.cpp should apply: the model's own (`{arch}.pooling_type`), or mean for a
/// model without one. A reranker's (rank) pooling gives scores, not embeddings: refused.
pub(super) fn pooling_for(model_pooling: Option<u32>) -> Result<LlamaPoolingType, WorkerError> {
    match model_pooling {
        None | Some(0) | Some(1) => Ok(LlamaPoolingType::Mean),
        Some(2) => Ok(LlamaPoolingType::Cls),
        Some(3) => Ok(LlamaPoolingType::Last),
        Some(4) => Err(WorkerError::new(
            ErrorKind::InvalidRequest,
            "this model is a reranker (rank pooling); it does not make embeddings",
        )),
        Some(other) => Err(WorkerError::new(
            ErrorKind::InvalidRequest,
            format!("this model's pooling type ({other}) is unknown"),
        )),
    }
}

impl<'model> Session<'model> {
    /// Queues an embedding request, or refuses it at once.
    pub(super) fn queue_embedding(&mut self, request: EmbedRequest, sink: &mut dyn EventSink) {
        let refusal = if self.embedder.contains(request.request_id) {
            Some(WorkerError::new(
                ErrorKind::DuplicateRequest,
                "request id already in flight",
            ))
        } else if self.embedder.queued() >= self.max_queue {
            Some(WorkerError::new(
                ErrorKind::QueueFull,
                format!(
                    "{} embedding requests are already waiting",
                    self.embedder.queued()
                ),
            ))
        } else if request.inputs.is_empty() {
            Some(WorkerError::new(
                ErrorKind::InvalidRequest,
                "input is empty",
            ))
        } else if request.inputs.len() > hearth_protocol::MAX_EMBEDDING_INPUTS {
            Some(WorkerError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "at most {} inputs may be embedded at once, got {}",
                    hearth_protocol::MAX_EMBEDDING_INPUTS,
                    request.inputs.len()
                ),
            ))
        } else {
            None
        };
        match refusal {
            Some(error) => sink.emit(error_event(Some(request.request_id), error)),
            None => self.embedder.jobs.push_back(EmbeddingJob {
                request_id: request.request_id,
                inputs: request.inputs,
                next_input: 0,
                prompt_tokens: 0,
                arrived_at: Instant::now(),
            }),
        }
    }

    /// Removes a queued embedding request, ending it as cancelled; whether there was one.
    pub(super) fn cancel_embedding(&mut self, request_id: u64, sink: &mut dyn EventSink) -> bool {
        let Some(position) = self
            .embedder
            .jobs
            .iter()
            .position(|job| job.request_id == request_id)
        else {
            return false;
        };
        if let Some(job) = self.embedder.jobs.remove(position) {
            sink.emit(cancelled_event(request_id, job.arrived_at));
        }
        true
    }

    /// Decodes one batch of the front request's inputs and sends their embeddings.
    pub(super) fn embed_step(&mut self, sink: &mut dyn EventSink) {
        let Some(request_id) = self.embedder.jobs.front().map(|job| job.request_id) else {
            return;
        };
        if let Err(error) = self.ensure_embedding_context() {
            for request_id in self.embedder.drain_ids() {
                sink.emit(error_event(Some(request_id), error.clone()));
            }
            return;
        }
        match self.embed_batch(sink) {
            Ok(true) => {
                if let Some(job) = self.embedder.jobs.pop_front() {
                    sink.emit(WorkerEvent::Embedded {
                        request_id,
                        prompt_tokens: job.prompt_tokens,
                    });
                }
            }
            Ok(false) => {}
            Err(error) => {
                self.embedder.jobs.pop_front();
                sink.emit(error_event(Some(request_id), error));
            }
        }
    }

    fn ensure_embedding_context(&mut self) -> Result<(), WorkerError> {
        if self.embedder.context.is_some() {
            return Ok(());
        }
        let architecture = self
            .model
            .meta_val_str("general.architecture")
            .unwrap_or_default();
        let model_pooling = self
            .model
            .meta_val_str(&format!("{architecture}.pooling_type"))
            .ok()
            .and_then(|value| value.trim().parse::<u32>().ok());
        let pooling = pooling_for(model_pooling)?;
        let trained = self.model.n_ctx_train();
        let input_tokens = if trained > 0 {
            trained.min(MAX_EMBEDDING_INPUT_TOKENS)
        } else {
            MAX_EMBEDDING_INPUT_TOKENS
        };
        // One KV buffer shared by the batch's sequences (cleared after every batch), sized for
        // one batch; encoder models need a whole input in one micro-batch.
        let params = self
            .embedder
            .base_params
            .clone()
            .with_embeddings(true)
            .with_pooling_type(pooling)
            .with_n_ctx(std::num::NonZeroU32::new(input_tokens))
            .with_n_batch(input_tokens)
            .with_n_ubatch(input_tokens)
            .with_n_seq_max(EMBEDDING_SEQUENCES)
            .with_kv_unified(true);
        let backend =
            load::backend().map_err(|detail| WorkerError::new(ErrorKind::LoadFailed, detail))?;
        let context = self.model.new_context(backend, params).map_err(|_| {
            WorkerError::new(
                ErrorKind::OutOfMemory,
                "llama.cpp could not create the embedding context for this model",
            )
        })?;
        tracing::info!(input_tokens, ?pooling, "embedding context created");
        self.embedder.context = Some(EmbeddingContext {
            context,
            batch: LlamaBatch::new(input_tokens as usize, 1),
            input_tokens: input_tokens as usize,
        });
        Ok(())
    }

    /// The tokens of one input, checked against the vocabulary and the input size.
    fn embedding_tokens(
        &self,
        input: &EmbeddingInput,
        index: usize,
        input_tokens: usize,
    ) -> Result<Vec<LlamaToken>, WorkerError> {
        let too_long = |count: Option<usize>| {
            let mut error = WorkerError::new(
                ErrorKind::ContextLengthExceeded,
                format!("input {index} is longer than the {input_tokens} tokens this model embeds at once"),
            );
            error.prompt_tokens = count.and_then(|count| u32::try_from(count).ok());
            error.n_ctx = u32::try_from(input_tokens).ok();
            error
        };
        let tokens = match input {
            EmbeddingInput::Tokens { tokens } => {
                let n_vocab = self.model.n_vocab();
                if let Some(bad) = tokens.iter().find(|t| **t < 0 || **t >= n_vocab) {
                    return Err(WorkerError::new(
                        ErrorKind::InvalidRequest,
                        format!("token id {bad} of input {index} is outside the vocabulary (0..{n_vocab})"),
                    ));
                }
                tokens.iter().map(|token| LlamaToken(*token)).collect()
            }
            EmbeddingInput::Text { text } => {
                let longest_token = self.max_prompt_bytes / self.n_ctx_per_sequence.max(1);
                if text.len() > input_tokens.saturating_mul(longest_token.max(1)) {
                    return Err(too_long(None));
                }
                self.model.vocab().tokenize(text.as_bytes(), true, false)
            }
        };
        if tokens.is_empty() {
            return Err(WorkerError::new(
                ErrorKind::InvalidRequest,
                format!("input {index} has no tokens"),
            ));
        }
        if tokens.len() > input_tokens {
            return Err(too_long(Some(tokens.len())));
        }
        Ok(tokens)
    }

    /// One batch of the front job; `Ok(true)` once its last input is embedded.
    fn embed_batch(&mut self, sink: &mut dyn EventSink) -> Result<bool, WorkerError> {
        let decoding = self
            .slots
            .iter()
            .filter(|slot| slot.active.is_some())
            .count();
        let Some(input_tokens) = self.embedder.context.as_ref().map(|c| c.input_tokens) else {
            return Ok(false);
        };
        let budget = if decoding == 0 {
            input_tokens
        } else {
            let tokens = input_tokens.min(self.n_batch as usize) as u32;
            self.pacer
                .budget(tokens, u32::try_from(decoding).unwrap_or(u32::MAX)) as usize
        };
        // Tokenize and place inputs until the budget or the sequences run out.
        let mut placed: Vec<(usize, Vec<LlamaToken>)> = Vec::new();
        let mut used = 0usize;
        let (first, count) = match self.embedder.jobs.front() {
            Some(job) => (job.next_input, job.inputs.len()),
            None => return Ok(false),
        };
        for index in first..count {
            if placed.len() >= EMBEDDING_SEQUENCES as usize {
                break;
            }
            let input = match self.embedder.jobs.front() {
                Some(job) => job.inputs[index].clone(),
                None => return Ok(false),
            };
            let tokens = self.embedding_tokens(&input, index, input_tokens)?;
            if !placed.is_empty() && used + tokens.len() > budget.max(1) {
                break;
            }
            used += tokens.len();
            placed.push((index, tokens));
        }
        let Some(embedding) = self.embedder.context.as_mut() else {
            return Ok(false);
        };
        embedding.batch.clear();
        for (seq, (_, tokens)) in placed.iter().enumerate() {
            let seq_id = i32::try_from(seq).unwrap_or(i32::MAX);
            for (position, token) in tokens.iter().enumerate() {
                let position = i32::try_from(position).unwrap_or(i32::MAX);
                embedding
                    .batch
                    .add(*token, position, &[seq_id], true)
                    .map_err(|error| {
                        WorkerError::new(ErrorKind::DecodeFailed, format!("batch full: {error}"))
                    })?;
            }
        }
        embedding.context.clear_kv_cache();
        let decoded = embedding.context.decode(&mut embedding.batch);
        let result = decoded
            .map_err(|error| {
                WorkerError::new(
                    ErrorKind::DecodeFailed,
                    format!("llama.cpp could not compute the embeddings: {error}"),
                )
            })
            .and_then(|()| {
                placed
                    .iter()
                    .enumerate()
                    .map(|(seq, (index, _))| {
                        let seq_id = i32::try_from(seq).unwrap_or(i32::MAX);
                        let mut vector = embedding
                            .context
                            .embeddings_seq_ith(seq_id)
                            .map_err(|_| {
                                WorkerError::new(
                                    ErrorKind::DecodeFailed,
                                    "llama.cpp returned no pooled embedding",
                                )
                            })?
                            .to_vec();
                        l2_normalize(&mut vector);
                        Ok((*index, vector))
                    })
                    .collect::<Result<Vec<_>, WorkerError>>()
            });
        embedding.context.clear_kv_cache();
        let Some(job) = self.embedder.jobs.front_mut() else {
            return Ok(false);
        };
        for (index, embedding) in result? {
            sink.emit(WorkerEvent::Embedding {
                request_id: job.request_id,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                embedding,
            });
        }
        job.next_input += placed.len();
        job.prompt_tokens = job
            .prompt_tokens
            .saturating_add(u32::try_from(used).unwrap_or(u32::MAX));
        Ok(job.next_input >= job.inputs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_without_pooling_are_mean_pooled_and_rerankers_refused() {
        assert_eq!(pooling_for(None).unwrap(), LlamaPoolingType::Mean);
        assert_eq!(pooling_for(Some(0)).unwrap(), LlamaPoolingType::Mean);
        assert_eq!(pooling_for(Some(2)).unwrap(), LlamaPoolingType::Cls);
        assert_eq!(pooling_for(Some(3)).unwrap(), LlamaPoolingType::Last);
        let rank = pooling_for(Some(4)).unwrap_err();
        assert!(rank.message.contains("reranker"), "{rank}");
        assert!(pooling_for(Some(9)).is_err());
    }
}
