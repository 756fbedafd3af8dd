//! Per-request latency and throughput figures, computed from timestamps by pure code.
//!
//! Definitions (the ones llama.cpp's server, vLLM and the usual benchmarks use):
//! - TTFT: from the request's arrival at the engine to the first generated token. It covers
//!   queueing and the whole prefill.
//! - ITL: each gap between two consecutive generated tokens (there are generated − 1 of them),
//!   with p50, p95 and max.
//! - TPOT: mean time per output token after the first: (end-to-end − TTFT) / (generated − 1).
//! - Prefill tokens/s: prompt tokens actually computed (cached ones excluded) / prefill time.
//! - Decode tokens/s: (generated − 1) / (end-to-end − TTFT).

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The figures of one finished request. Times are in milliseconds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RequestMetrics {
    pub prompt_tokens: u32,
    /// Prompt tokens reused from the KV cache (not computed again).
    pub cached_prompt_tokens: u32,
    /// Where the cached prompt tokens came from.
    #[serde(default)]
    pub prompt_cache_tier: CacheTier,
    pub generated_tokens: u32,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    /// Every inter-token gap, in order.
    pub itl_ms: Vec<f64>,
    pub itl_p50_ms: f64,
    pub itl_p95_ms: f64,
    pub itl_max_ms: f64,
    pub e2e_ms: f64,
    /// Time spent computing the prompt, from admission to the first token's logits.
    pub prefill_ms: f64,
    /// Time the request waited in the queue before a slot took it.
    pub queue_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// Speculative decoding: tokens guessed (by a draft model or n-gram lookup) and verified.
    #[serde(default)]
    pub drafted_tokens: u32,
    /// Guessed tokens the model accepted (each one a token that needed no step of its own).
    #[serde(default)]
    pub accepted_tokens: u32,
    /// accepted / drafted (0 when nothing was drafted).
    #[serde(default)]
    pub acceptance_rate: f64,
}

/// Which tier of the KV cache served a prompt's cached tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheTier {
    /// Nothing was reused: the whole prompt was computed.
    #[default]
    None,
    /// The slot's own sequence, or another slot's copied in.
    Slot,
    /// A state saved in host memory, restored into the slot.
    Ram,
    /// A state saved on disk (possibly by an earlier run), restored into the slot.
    Disk,
}

impl CacheTier {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheTier::None => "none",
            CacheTier::Slot => "slot",
            CacheTier::Ram => "ram",
            CacheTier::Disk => "disk",
        }
    }
}

/// Nearest-rank percentile of unsorted samples (`p` in 0..=100); 0 when there are none.
pub fn percentile_nearest_rank(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Collects the timestamps of one request as it runs; [`MetricsRecorder::finish`] turns them
/// into [`RequestMetrics`].
#[derive(Debug, Clone)]
pub struct MetricsRecorder {
    arrived_at: Instant,
    admitted_at: Option<Instant>,
    prompt_tokens: u32,
    cached_prompt_tokens: u32,
    prompt_cache_tier: CacheTier,
    token_times: Vec<Instant>,
    drafted_tokens: u32,
    accepted_tokens: u32,
}

impl MetricsRecorder {
    pub fn new(arrived_at: Instant) -> Self {
        Self {
            arrived_at,
            admitted_at: None,
            prompt_tokens: 0,
            cached_prompt_tokens: 0,
            prompt_cache_tier: CacheTier::None,
            token_times: Vec::new(),
            drafted_tokens: 0,
            accepted_tokens: 0,
        }
    }

    /// One verification of speculative decoding: `drafted` guessed tokens, `accepted` of them
    /// taken.
    pub fn speculated(&mut self, drafted: u32, accepted: u32) {
        self.drafted_tokens = self.drafted_tokens.saturating_add(drafted);
        self.accepted_tokens = self.accepted_tokens.saturating_add(accepted);
    }

    /// The request got a slot; its prompt has `prompt_tokens` tokens, `cached` of them reused.
    pub fn admitted(&mut self, at: Instant, prompt_tokens: u32, cached: u32) {
        self.admitted_at = Some(at);
        self.prompt_tokens = prompt_tokens;
        self.cached_prompt_tokens = cached;
    }

    /// The cached prompt tokens came from `tier`.
    pub fn served_from(&mut self, tier: CacheTier) {
        self.prompt_cache_tier = tier;
    }

    /// A token was generated (sampled) at `at`, whether or not its text was shown yet.
    pub fn token_generated(&mut self, at: Instant) {
        self.token_times.push(at);
    }

    pub fn generated_tokens(&self) -> u32 {
        u32::try_from(self.token_times.len()).unwrap_or(u32::MAX)
    }

    pub fn finish(&self, finished_at: Instant) -> RequestMetrics {
        let admitted_at = self.admitted_at.unwrap_or(finished_at);
        let first_token_at = self.token_times.first().copied();
        let e2e_ms = millis(finished_at.saturating_duration_since(self.arrived_at));
        let ttft_ms = first_token_at
            .map(|at| millis(at.saturating_duration_since(self.arrived_at)))
            .unwrap_or(0.0);
        let prefill_ms = first_token_at
            .map(|at| millis(at.saturating_duration_since(admitted_at)))
            .unwrap_or(0.0);
        let queue_ms = millis(admitted_at.saturating_duration_since(self.arrived_at));
        let itl_ms: Vec<f64> = self
            .token_times
            .windows(2)
            .map(|pair| millis(pair[1].saturating_duration_since(pair[0])))
            .collect();
        let decode_ms: f64 = match (self.token_times.first(), self.token_times.last()) {
            (Some(first), Some(last)) => millis(last.saturating_duration_since(*first)),
            _ => 0.0,
        };
        let gaps = itl_ms.len() as f64;
        let computed_prompt_tokens = self.prompt_tokens.saturating_sub(self.cached_prompt_tokens);
        RequestMetrics {
            prompt_tokens: self.prompt_tokens,
            cached_prompt_tokens: self.cached_prompt_tokens,
            prompt_cache_tier: self.prompt_cache_tier,
            generated_tokens: self.generated_tokens(),
            ttft_ms,
            tpot_ms: if gaps > 0.0 { decode_ms / gaps } else { 0.0 },
            itl_p50_ms: percentile_nearest_rank(&itl_ms, 50.0),
            itl_p95_ms: percentile_nearest_rank(&itl_ms, 95.0),
            itl_max_ms: itl_ms.iter().copied().fold(0.0, f64::max),
            itl_ms,
            e2e_ms,
            prefill_ms,
            queue_ms,
            prefill_tokens_per_s: rate(f64::from(computed_prompt_tokens), prefill_ms),
            decode_tokens_per_s: rate(gaps, decode_ms),
            drafted_tokens: self.drafted_tokens,
            accepted_tokens: self.accepted_tokens,
            acceptance_rate: if self.drafted_tokens > 0 {
                f64::from(self.accepted_tokens) / f64::from(self.drafted_tokens)
            } else {
                0.0
            },
        }
    }
}

fn rate(count: f64, over_ms: f64) -> f64 {
    if over_ms > 0.0 {
        count / (over_ms / 1000.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile_nearest_rank(&samples, 50.0), 3.0);
        assert_eq!(percentile_nearest_rank(&samples, 95.0), 5.0);
        assert_eq!(percentile_nearest_rank(&samples, 0.0), 1.0);
        assert_eq!(percentile_nearest_rank(&[], 50.0), 0.0);
    }

    #[test]
    fn metrics_follow_their_definitions() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut recorder = MetricsRecorder::new(start);
        recorder.admitted(at(10), 100, 20);
        recorder.token_generated(at(110));
        recorder.token_generated(at(120));
        recorder.token_generated(at(140));
        let metrics = recorder.finish(at(150));
        assert_eq!(metrics.generated_tokens, 3);
        assert_eq!(metrics.itl_ms.len(), 2, "ITL count is generated - 1");
        assert!((metrics.ttft_ms - 110.0).abs() < 1e-6);
        assert!((metrics.queue_ms - 10.0).abs() < 1e-6);
        assert!((metrics.prefill_ms - 100.0).abs() < 1e-6);
        assert!((metrics.tpot_ms - 15.0).abs() < 1e-6);
        assert!((metrics.itl_max_ms - 20.0).abs() < 1e-6);
        assert!((metrics.e2e_ms - 150.0).abs() < 1e-6);
        assert!(metrics.ttft_ms <= metrics.e2e_ms);
        // 80 computed prompt tokens in 100 ms, 2 decode gaps in 30 ms.
        assert!((metrics.prefill_tokens_per_s - 800.0).abs() < 1e-6);
        assert!((metrics.decode_tokens_per_s - 2000.0 / 30.0).abs() < 1e-6);
        assert_eq!(metrics.drafted_tokens, 0);
        assert_eq!(metrics.acceptance_rate, 0.0);
    }

    #[test]
    fn speculation_counts_add_up_to_a_rate() {
        let start = Instant::now();
        let mut recorder = MetricsRecorder::new(start);
        recorder.speculated(4, 3);
        recorder.speculated(4, 0);
        let metrics = recorder.finish(start);
        assert_eq!((metrics.drafted_tokens, metrics.accepted_tokens), (8, 3));
        assert!((metrics.acceptance_rate - 0.375).abs() < 1e-12);
    }

    #[test]
    fn a_request_without_tokens_has_zero_rates_not_nan() {
        let start = Instant::now();
        let metrics = MetricsRecorder::new(start).finish(start + Duration::from_millis(5));
        assert_eq!(metrics.generated_tokens, 0);
        assert_eq!(metrics.decode_tokens_per_s, 0.0);
        assert_eq!(metrics.prefill_tokens_per_s, 0.0);
        assert!(metrics.itl_ms.is_empty());
    }
}
