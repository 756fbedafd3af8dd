//! Turning [`SamplingParams`] into a llama.cpp sampler chain.

use hearth_protocol::SamplingParams;
use llama_cpp_2::sampling::LlamaSampler;

/// Builds the chain: penalties, then (unless greedy) top-k, top-p, min-p, temperature and a
/// seeded random draw. Greedy decoding takes the argmax and is fully deterministic.
pub fn build_sampler(
    params: &SamplingParams,
    n_vocab: i32,
    n_ctx_per_sequence: i32,
) -> LlamaSampler {
    let mut chain = Vec::new();
    let penalised = params.repeat_penalty != 1.0
        || params.presence_penalty != 0.0
        || params.frequency_penalty != 0.0;
    if penalised {
        let last_n = if params.repeat_last_n < 0 {
            n_ctx_per_sequence
        } else {
            params.repeat_last_n
        };
        chain.push(LlamaSampler::penalties(
            n_vocab,
            last_n,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        ));
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

/// A seed for requests that do not give one.
fn random_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}
