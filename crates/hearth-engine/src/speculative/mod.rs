//! Speculative decoding: a guesser proposes the next few tokens of a sequence, and the step
//! verifies them in the same batch as every other sequence's token (one position each, with
//! logits), keeping the guesses the model's own sampler agrees with and one token more. A
//! sequence that is not speculating keeps its one token per step in that same batch.
//!
//! Two guessers: n-gram lookup in the prompt and answer so far ([`ngram`]), and a draft model
//! ([`draft`]). [`acceptance`] holds the rules (rejection sampling, the adaptive draft length)
//! as pure code; [`choice`] decides whether a proposed draft model is loaded at all. The step
//! itself (`engine::step`) removes the rejected positions from the target's cache; the draft
//! removes its own before its next guess.

pub mod acceptance;
pub mod choice;
pub mod draft;
pub mod ngram;

use hearth_protocol::SpeculativeMode;
use llama_cpp_2::token::LlamaToken;

pub use acceptance::DraftLength;
pub use draft::DraftModel;

/// What guesses tokens for a session's sequences.
#[derive(Debug)]
pub enum Guesser<'model> {
    Off,
    Ngram,
    Draft(Box<DraftModel<'model>>),
}

impl Guesser<'_> {
    pub fn is_off(&self) -> bool {
        matches!(self, Guesser::Off)
    }

    pub fn mode(&self) -> SpeculativeMode {
        match self {
            Guesser::Off => SpeculativeMode::Off,
            Guesser::Ngram => SpeculativeMode::Ngram,
            Guesser::Draft(_) => SpeculativeMode::Draft,
        }
    }

    /// Up to `max_tokens` guesses of what follows `history` in sequence `seq`.
    pub fn propose(
        &mut self,
        seq: usize,
        history: &[LlamaToken],
        max_tokens: usize,
    ) -> Vec<LlamaToken> {
        match self {
            Guesser::Off => Vec::new(),
            Guesser::Ngram => ngram::lookup(history, max_tokens),
            Guesser::Draft(draft) => draft.propose(seq, history, max_tokens),
        }
    }

    /// Sequence `seq`'s cache contents are unknown (a failed decode): start it afresh.
    pub fn forget(&mut self, seq: usize) {
        if let Guesser::Draft(draft) = self {
            draft.forget(seq);
        }
    }
}
