//! What an answer cost: OpenAI's `usage` (with cached and thinking tokens) and Hearth's
//! `timings`, named as llama.cpp's server names them (with TTFT, TPOT, ITL and speculative
//! decoding's counts), both from the engine's [`RequestMetrics`].

use hearth_protocol::RequestMetrics;
use serde::Serialize;

/// OpenAI's `usage` object.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub completion_tokens: u32,
    /// How many of the completion tokens were thinking; only for a model that thinks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    pub prompt_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

/// Hearth's figures: llama.cpp's `timings` keys, plus TTFT, TPOT and ITL.
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub cache_n: u32,
    /// Speculative decoding: guesses verified and accepted (llama.cpp's server's keys), and
    /// accepted / drafted.
    pub draft_acceptance_rate: f64,
    pub draft_n: u32,
    pub draft_n_accepted: u32,
    pub e2e_ms: f64,
    pub itl_max_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p95_ms: f64,
    pub predicted_ms: f64,
    pub predicted_n: u32,
    pub predicted_per_second: f64,
    pub predicted_per_token_ms: f64,
    pub prompt_ms: f64,
    pub prompt_n: u32,
    pub prompt_per_second: f64,
    pub prompt_per_token_ms: f64,
    pub queue_ms: f64,
    pub tpot_ms: f64,
    pub ttft_ms: f64,
}

/// OpenAI's `usage` object, with the thinking's tokens for a model that thinks.
pub fn usage(metrics: &RequestMetrics, reasoning_tokens: Option<u32>) -> Usage {
    Usage {
        completion_tokens: metrics.generated_tokens,
        completion_tokens_details: reasoning_tokens
            .map(|reasoning_tokens| CompletionTokensDetails { reasoning_tokens }),
        prompt_tokens: metrics.prompt_tokens,
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: metrics.cached_prompt_tokens,
        },
        total_tokens: u64::from(metrics.prompt_tokens) + u64::from(metrics.generated_tokens),
    }
}

/// Hearth's figures: llama.cpp's `timings` keys, plus TTFT, TPOT and ITL.
pub fn timings(metrics: &RequestMetrics) -> Timings {
    let computed_prompt = metrics
        .prompt_tokens
        .saturating_sub(metrics.cached_prompt_tokens);
    let per = |total_ms: f64, count: u32| {
        if count > 0 {
            total_ms / f64::from(count)
        } else {
            0.0
        }
    };
    Timings {
        cache_n: metrics.cached_prompt_tokens,
        draft_acceptance_rate: metrics.acceptance_rate,
        draft_n: metrics.drafted_tokens,
        draft_n_accepted: metrics.accepted_tokens,
        e2e_ms: metrics.e2e_ms,
        itl_max_ms: metrics.itl_max_ms,
        itl_p50_ms: metrics.itl_p50_ms,
        itl_p95_ms: metrics.itl_p95_ms,
        predicted_ms: (metrics.e2e_ms - metrics.ttft_ms).max(0.0),
        predicted_n: metrics.generated_tokens,
        predicted_per_second: metrics.decode_tokens_per_s,
        predicted_per_token_ms: metrics.tpot_ms,
        prompt_ms: metrics.prefill_ms,
        prompt_n: computed_prompt,
        prompt_per_second: metrics.prefill_tokens_per_s,
        prompt_per_token_ms: per(metrics.prefill_ms, computed_prompt),
        queue_ms: metrics.queue_ms,
        tpot_ms: metrics.tpot_ms,
        ttft_ms: metrics.ttft_ms,
    }
}
