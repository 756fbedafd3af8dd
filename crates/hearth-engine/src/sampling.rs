//! Turning [`SamplingParams`] (and an output constraint's grammar sampler, built by
//! [`crate::constraint`]) into a llama.cpp sampler chain, and reading log-probabilities from
//! logits.

use hearth_protocol::{SamplingParams, TokenLogprob, TopLogprob, WorkerError};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use crate::constraint::invalid_constraint;

/// Builds the chain: grammar (if any), penalties (primed with the prompt), then greedy, or
/// top-k, top-p, min-p, temperature and a seeded draw. Greedy decoding is deterministic.
pub fn build_sampler(
    model: &LlamaModel,
    params: &SamplingParams,
    grammar: Option<LlamaSampler>,
    prompt: &[LlamaToken],
    n_ctx_per_sequence: i32,
) -> LlamaSampler {
    let mut chain = Vec::new();
    chain.extend(grammar);
    let penalised = params.repeat_penalty != 1.0
        || params.presence_penalty != 0.0
        || params.frequency_penalty != 0.0;
    if penalised {
        let last_n = if params.repeat_last_n < 0 {
            n_ctx_per_sequence
        } else {
            params.repeat_last_n
        };
        let mut penalties = LlamaSampler::penalties(
            model.n_vocab(),
            last_n,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        );
        // The prompt counts as history for the penalties (as in llama.cpp's server), but must
        // never reach the grammar, which only accepts generated text.
        penalties.accept_many(prompt.iter());
        chain.push(penalties);
    }
    if params.is_greedy() {
        chain.push(LlamaSampler::greedy());
    } else {
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(params.top_k));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p, 1));
        }
        if params.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(params.min_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        chain.push(LlamaSampler::dist(params.seed.unwrap_or_else(random_seed)));
    }
    LlamaSampler::chain_simple(chain)
}

/// Samples a token from `logits` with a chain that holds a grammar, as `LlamaSampler::sample`
/// does, except that a token the grammar rejects is never accepted: llama.cpp aborts the
/// process on an end-of-generation token its grammar rejects, and throws through its C API
/// (an abort too) on any other, which a grammar no token can satisfy leads to. Here that is
/// an error, and the grammar's exceptions come back as errors through llama.cpp's wrapper.
pub fn sample_constrained(
    sampler: &mut LlamaSampler,
    logits: &[f32],
) -> Result<LlamaToken, WorkerError> {
    let mut candidates = LlamaTokenDataArray::from_iter(
        logits.iter().enumerate().map(|(id, logit)| {
            LlamaTokenData::new(LlamaToken(i32::try_from(id).unwrap_or(0)), *logit, 0.0)
        }),
        false,
    );
    sampler.apply(&mut candidates);
    let token = candidates
        .selected
        .and_then(|index| candidates.data.get(index))
        .filter(|chosen| chosen.logit() > f32::NEG_INFINITY)
        .map(LlamaTokenData::id)
        .ok_or_else(|| invalid_constraint("no token can continue the constrained output"))?;
    sampler
        .try_accept(token)
        .map_err(|_| invalid_constraint("the grammar rejected the sampled token"))?;
    Ok(token)
}

/// A seed for requests that do not give one.
fn random_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// Log-softmax of `logits` at `index`, and the `top` most likely tokens with theirs.
pub fn log_softmax_top(logits: &[f32], index: usize, top: usize) -> (f32, Vec<(usize, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln() + max;
    let chosen = logits.get(index).map_or(f32::NEG_INFINITY, |l| l - log_sum);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let top = top.min(order.len());
    if top > 0 {
        order.select_nth_unstable_by(top - 1, |a, b| logits[*b].total_cmp(&logits[*a]));
        order.truncate(top);
        order.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    } else {
        order.clear();
    }
    (
        chosen,
        order
            .into_iter()
            .map(|i| (i, logits[i] - log_sum))
            .collect(),
    )
}

/// The model's log-probability of the sampled token and of its `alternatives` best rivals.
pub fn token_logprob(
    model: &LlamaModel,
    logits: &[f32],
    token: LlamaToken,
    alternatives: u32,
) -> TokenLogprob {
    let vocab = model.vocab();
    let piece = |id: usize| {
        let bytes = vocab.token_to_piece(LlamaToken(i32::try_from(id).unwrap_or(0)), false, None);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let index = usize::try_from(token.0).unwrap_or(usize::MAX);
    let (logprob, top) = log_softmax_top(logits, index, alternatives as usize);
    let (text, bytes) = piece(index);
    TokenLogprob {
        token: text,
        bytes,
        logprob,
        top_logprobs: top
            .into_iter()
            .map(|(id, logprob)| {
                let (token, bytes) = piece(id);
                TopLogprob {
                    token,
                    bytes,
                    logprob,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_matches_the_definition() {
        let logits = [1.0f32, 3.0, 2.0];
        let (chosen, top) = log_softmax_top(&logits, 1, 2);
        let sum: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((chosen - (3.0f32.exp() / sum).ln()).abs() < 1e-5);
        assert_eq!(top.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2]);
        assert!((top[0].1 - chosen).abs() < 1e-6);
        let (_, none) = log_softmax_top(&logits, 0, 0);
        assert!(none.is_empty());
    }
}
