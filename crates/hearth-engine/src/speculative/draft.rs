//! The draft model: a smaller model with the target's vocabulary, loaded in the same worker
//! with a context of its own (one sequence per slot of the target), that guesses the next
//! tokens greedily.
//!
//! Its KV cache follows each slot's history lazily: before guessing, the sequence's cache is cut
//! back to the longest prefix it shares with the target's history (so the guesses the target
//! rejected are removed with `llama_memory_seq_rm`) and the tokens it lacks are computed, at
//! most one batch of them per step, so a long prompt's catch-up never stalls a step for long.

use hearth_protocol::{ErrorKind, WorkerError};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

/// The draft stops guessing at a token it gives less than this probability: a guess it is
/// unsure of is likely rejected, and each one costs a position in the target's batch
/// (llama.cpp's server uses the same threshold).
const MIN_DRAFT_PROBABILITY: f32 = 0.75;

/// Checks that the draft model can guess for the target: the same vocabulary, token by token.
pub fn check_vocabulary(target: &LlamaModel, draft: &LlamaModel) -> Result<(), WorkerError> {
    let mismatch = |detail: String| {
        WorkerError::new(
            ErrorKind::LoadFailed,
            format!("the draft model cannot guess for this model: {detail}"),
        )
    };
    if target.n_vocab() != draft.n_vocab() {
        return Err(mismatch(format!(
            "its vocabulary has {} tokens, the model's {}",
            draft.n_vocab(),
            target.n_vocab()
        )));
    }
    let (target_vocab, draft_vocab) = (target.vocab(), draft.vocab());
    for id in 0..target.n_vocab() {
        let token = LlamaToken(id);
        if target_vocab.token_to_piece(token, true, None)
            != draft_vocab.token_to_piece(token, true, None)
        {
            return Err(mismatch(format!("token {id} differs")));
        }
    }
    Ok(())
}

/// The draft model's context and what each of its sequences holds.
pub struct DraftModel<'model> {
    model: &'model LlamaModel,
    context: LlamaContext<'model>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// Per sequence (the target's slot index), the tokens in the draft's KV cache.
    cached: Vec<Vec<LlamaToken>>,
}

impl std::fmt::Debug for DraftModel<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DraftModel")
            .field("n_batch", &self.n_batch)
            .field(
                "cached",
                &self.cached.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<'model> DraftModel<'model> {
    pub fn new(model: &'model LlamaModel, context: LlamaContext<'model>, n_seq: usize) -> Self {
        let n_batch = context.n_batch() as usize;
        Self {
            model,
            context,
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
            cached: vec![Vec::new(); n_seq],
        }
    }

    /// Forgets what sequence `seq` holds (its cache contents are unknown).
    pub fn forget(&mut self, seq: usize) {
        if let Some(cached) = self.cached.get_mut(seq) {
            cached.clear();
            let _ =
                self.context
                    .kv_cache_seq_rm(i32::try_from(seq).unwrap_or(i32::MAX), None, None);
        }
    }

    /// Up to `max_tokens` greedy guesses of what follows `history` in sequence `seq`; none
    /// while the draft is still catching up with a long history, or if a decode fails.
    pub fn propose(
        &mut self,
        seq: usize,
        history: &[LlamaToken],
        max_tokens: usize,
    ) -> Vec<LlamaToken> {
        if max_tokens == 0 || history.is_empty() || seq >= self.cached.len() {
            return Vec::new();
        }
        let seq_id = i32::try_from(seq).unwrap_or(i32::MAX);
        let cached = &mut self.cached[seq];
        // The last token is always computed again: its logits give the first guess.
        let shared = cached
            .iter()
            .zip(history)
            .take_while(|(a, b)| a == b)
            .count()
            .min(history.len() - 1);
        if shared < cached.len() {
            let start = u32::try_from(shared).unwrap_or(u32::MAX);
            if self
                .context
                .kv_cache_seq_rm(seq_id, Some(start), None)
                .is_err()
            {
                self.forget(seq);
                return Vec::new();
            }
            self.cached[seq].truncate(shared);
        }
        let missing = &history[shared..];
        if missing.len() > self.n_batch {
            // Catch up one batch per step; guess once the history fits a batch.
            let chunk = missing[..self.n_batch].to_vec();
            let _ = self.decode(seq, &chunk, false);
            return Vec::new();
        }
        let mut guesses = Vec::new();
        let mut next = missing.to_vec();
        while guesses.len() < max_tokens {
            if self.decode(seq, &next, true).is_none() {
                return guesses;
            }
            let logits = self.context.get_logits_ith(self.batch.n_tokens() - 1);
            let (token, probability) = most_likely(logits);
            if probability < MIN_DRAFT_PROBABILITY || self.model.vocab().is_eog(token) {
                break;
            }
            guesses.push(token);
            next = vec![token];
        }
        guesses
    }

    /// Decodes `tokens` at the end of sequence `seq` (logits for the last if asked); `None`
    /// if llama.cpp failed, after which the sequence starts afresh.
    fn decode(&mut self, seq: usize, tokens: &[LlamaToken], logits: bool) -> Option<()> {
        let seq_id = i32::try_from(seq).unwrap_or(i32::MAX);
        let start = self.cached[seq].len();
        self.batch.clear();
        for (offset, token) in tokens.iter().enumerate() {
            let last = logits && offset + 1 == tokens.len();
            let position = i32::try_from(start + offset).unwrap_or(i32::MAX);
            self.batch.add(*token, position, &[seq_id], last).ok()?;
        }
        if let Err(error) = self.context.decode(&mut self.batch) {
            tracing::warn!(%error, "the draft model failed to decode");
            self.forget(seq);
            return None;
        }
        self.cached[seq].extend_from_slice(tokens);
        Some(())
    }
}

/// The most likely token and its probability (softmax of the logits).
fn most_likely(logits: &[f32]) -> (LlamaToken, f32) {
    let (best, max) =
        logits
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bl), (i, l)| {
                if l > bl {
                    (i, l)
                } else {
                    (bi, bl)
                }
            });
    let total: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    (
        LlamaToken(i32::try_from(best).unwrap_or(0)),
        if total > 0.0 { 1.0 / total } else { 0.0 },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_likely_token_has_its_softmax_probability() {
        let (token, probability) = most_likely(&[0.0, 2.0, 1.0]);
        assert_eq!(token, LlamaToken(1));
        let expected = 2f32.exp() / (1.0 + 2f32.exp() + 1f32.exp());
        assert!((probability - expected).abs() < 1e-6);
    }
}
