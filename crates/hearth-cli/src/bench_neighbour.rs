//! `hearth bench --speculative ngram --neighbour` (or `--draft-model M --neighbour`): what one
//! sequence's speculation costs a sequence beside it that does not speculate.
//!
//! Two workers hold the same model with two sequences each, one with speculation off and one
//! with it on. Each repetition sends two greedy answers at once to one worker: the speculating
//! stream (the rewrite prompt for n-gram lookup, the explain prompt for a draft) and the
//! neighbour (another prompt, sent with `speculate: false`, so it guesses nothing on either
//! worker and its own tokens per step stay 1). The repetitions alternate between the workers
//! (AB BA AB …). The neighbour's time per token is taken over the window in which both
//! streams decode (its first token after the other's first, its last before the other's last:
//! a faster speculating stream ends sooner and would otherwise leave the neighbour alone in
//! its last steps). The report gives the neighbour's median TPOT with and without the other
//! stream speculating and their ratio (above 1: the neighbour is slowed), whether its answer was
//! the same on both workers (greedy decoding: it must be), and the speculating stream's own
//! decode rate and tokens per step.

use hearth_protocol::{
    percentile_nearest_rank, ChatMessage, LoadParams, ModelInfo, Prompt, RequestMetrics, Role,
    SamplingParams, SpeculativeMode,
};
use hearth_supervisor::{Generation, Supervisor};
use serde::Serialize;

use crate::bench::BenchArgs;
use crate::bench_modes::token_times_ms;
use crate::bench_speculative::{alternate, load_both};

/// The neighbour's prompt: open prose, nothing to copy from the speculating stream's text.
const NEIGHBOUR_PROMPT: &str = "Write a short story about a cat who learns to sail a boat.";

/// One repetition's figures on one worker.
#[derive(Debug, Serialize)]
pub struct NeighbourRun {
    /// The neighbour's mean time per token while both streams decode.
    pub neighbour_overlap_tpot_ms: f64,
    /// Neighbour tokens inside that window.
    pub neighbour_overlap_tokens: usize,
    pub neighbour: RequestMetrics,
    pub speculating: RequestMetrics,
    /// Engine steps the pair took.
    pub steps: u64,
}

/// One worker's side, medians over the repetitions.
#[derive(Debug, Serialize)]
pub struct NeighbourSide {
    pub neighbour_tpot_ms: f64,
    /// The neighbour's TPOT over its whole answer (including any steps it decoded alone).
    pub neighbour_full_tpot_ms: f64,
    pub speculating_decode_tokens_per_s: f64,
    /// The speculating stream's tokens per decode step: generated after the first over
    /// (that minus the guesses it accepted).
    pub speculating_tokens_per_step: f64,
    pub runs: Vec<NeighbourRun>,
}

#[derive(Debug, Serialize)]
pub struct NeighbourReport {
    pub model: ModelInfo,
    pub speculative: SpeculativeMode,
    pub repetitions: u32,
    pub speculating_prompt: String,
    pub neighbour_prompt: String,
    pub baseline: NeighbourSide,
    pub speculative_run: NeighbourSide,
    /// Median neighbour TPOT beside the speculating stream over that beside the same stream
    /// without speculation (1: not slowed).
    pub neighbour_tpot_ratio: f64,
    /// Median speculating-stream decode tokens/s with speculation over without.
    pub speculating_speedup: f64,
    /// Guesses the neighbour made (0: it never speculated) and the other stream's.
    pub neighbour_drafted_tokens: u32,
    pub speculating_drafted_tokens: u32,
    pub speculating_accepted_tokens: u32,
    /// Every neighbour answer was the same text on both workers.
    pub neighbour_identical_output: bool,
}

fn greedy(prompt: &str, max_tokens: u32, speculate: bool) -> Generation {
    let mut generation = Generation::new(Prompt::Chat {
        messages: vec![ChatMessage::new(Role::User, prompt.to_string())],
    });
    generation.sampling = SamplingParams::greedy();
    generation.max_tokens = Some(max_tokens);
    generation.speculate = speculate;
    generation
}

/// The neighbour's mean gap over the tokens it produced while the other stream was also
/// decoding (both requests arrive together, so their token times share an origin), and how
/// many tokens that covers.
pub fn overlap_tpot_ms(neighbour: &RequestMetrics, other: &RequestMetrics) -> (f64, usize) {
    let other_times = token_times_ms(other);
    let (Some(&start), Some(&end)) = (other_times.first(), other_times.last()) else {
        return (0.0, 0);
    };
    let inside: Vec<f64> = token_times_ms(neighbour)
        .into_iter()
        .filter(|time| *time >= start && *time <= end)
        .collect();
    match (inside.first(), inside.last()) {
        (Some(first), Some(last)) if inside.len() >= 2 => {
            ((last - first) / (inside.len() - 1) as f64, inside.len())
        }
        _ => (0.0, inside.len()),
    }
}

/// Both answers at once on `worker`: (neighbour's text, the run).
async fn pair(
    worker: &Supervisor,
    speculating_prompt: &str,
    max_tokens: u32,
) -> anyhow::Result<(String, NeighbourRun)> {
    let steps_before = worker.stats().await?.steps;
    let mut speculating_sink = std::io::sink();
    let mut neighbour_sink = std::io::sink();
    let (speculating, neighbour) = tokio::join!(
        crate::run::stream_answer(
            worker,
            greedy(speculating_prompt, max_tokens, true),
            &mut speculating_sink
        ),
        crate::run::stream_answer(
            worker,
            greedy(NEIGHBOUR_PROMPT, max_tokens, false),
            &mut neighbour_sink
        ),
    );
    let (_, _, speculating) = speculating?;
    let (text, _, neighbour) = neighbour?;
    let steps = worker.stats().await?.steps - steps_before;
    let (tpot, tokens) = overlap_tpot_ms(&neighbour, &speculating);
    Ok((
        text,
        NeighbourRun {
            neighbour_overlap_tpot_ms: tpot,
            neighbour_overlap_tokens: tokens,
            neighbour,
            speculating,
            steps,
        },
    ))
}

fn side(runs: Vec<NeighbourRun>) -> NeighbourSide {
    let median = |field: &dyn Fn(&NeighbourRun) -> f64| {
        percentile_nearest_rank(&runs.iter().map(field).collect::<Vec<_>>(), 50.0)
    };
    NeighbourSide {
        neighbour_tpot_ms: median(&|run| run.neighbour_overlap_tpot_ms),
        neighbour_full_tpot_ms: median(&|run| run.neighbour.tpot_ms),
        speculating_decode_tokens_per_s: median(&|run| run.speculating.decode_tokens_per_s),
        speculating_tokens_per_step: median(&|run| {
            let decoded = f64::from(run.speculating.generated_tokens.saturating_sub(1));
            let steps = decoded - f64::from(run.speculating.accepted_tokens);
            if steps > 0.0 {
                decoded / steps
            } else {
                1.0
            }
        }),
        runs,
    }
}

pub async fn neighbour(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.repetitions >= 1, "--repetitions must be at least 1");
    let baseline = crate::supervisor()?;
    let speculative = crate::supervisor()?;
    let result = compare(&baseline, &speculative, args).await;
    baseline.shutdown().await;
    speculative.shutdown().await;
    crate::bench::print_report(&result?, args.json, print_table)
}

async fn compare(
    baseline: &Supervisor,
    speculative: &Supervisor,
    args: &BenchArgs,
) -> anyhow::Result<NeighbourReport> {
    let gen_tokens = args.gen_tokens();
    let two_sequences = LoadParams {
        n_parallel: 2,
        ..args.model.load_params()
    };
    let (model, with, speculating_prompt) =
        load_both(baseline, speculative, args, two_sequences).await?;
    // Warm-up: page faults and thread pools of both workers.
    pair(baseline, &speculating_prompt, 4).await?;
    pair(speculative, &speculating_prompt, 4).await?;
    let (base_runs, spec_runs, neighbour_identical_output) =
        alternate(args.repetitions, |speculating| {
            let worker = if speculating { speculative } else { baseline };
            pair(worker, &speculating_prompt, gen_tokens)
        })
        .await?;
    let sum = |runs: &[NeighbourRun], field: fn(&NeighbourRun) -> u32| -> u32 {
        runs.iter().map(field).sum()
    };
    let neighbour_drafted_tokens = sum(&spec_runs, |run| run.neighbour.drafted_tokens);
    let speculating_drafted_tokens = sum(&spec_runs, |run| run.speculating.drafted_tokens);
    let speculating_accepted_tokens = sum(&spec_runs, |run| run.speculating.accepted_tokens);
    let baseline = side(base_runs);
    let speculative_run = side(spec_runs);
    let ratio = |with: f64, without: f64| if without > 0.0 { with / without } else { 0.0 };
    Ok(NeighbourReport {
        model,
        speculative: with.speculative,
        repetitions: args.repetitions,
        speculating_prompt,
        neighbour_prompt: NEIGHBOUR_PROMPT.to_string(),
        neighbour_tpot_ratio: ratio(
            speculative_run.neighbour_tpot_ms,
            baseline.neighbour_tpot_ms,
        ),
        speculating_speedup: ratio(
            speculative_run.speculating_decode_tokens_per_s,
            baseline.speculating_decode_tokens_per_s,
        ),
        neighbour_drafted_tokens,
        speculating_drafted_tokens,
        speculating_accepted_tokens,
        neighbour_identical_output,
        baseline,
        speculative_run,
    })
}

fn print_table(report: &NeighbourReport) {
    println!(
        "{} · neighbour of a stream speculating with {} · {} threads · {} repetitions each, alternating (medians)",
        report.model.file_name,
        report.speculative.as_str(),
        report.model.n_threads,
        report.repetitions
    );
    println!("{:<40} {:>12} {:>12}", "metric", "without", "with");
    println!(
        "{:<40} {:>12.2} {:>12.2}",
        "neighbour TPOT ms (both decoding)",
        report.baseline.neighbour_tpot_ms,
        report.speculative_run.neighbour_tpot_ms
    );
    println!(
        "{:<40} {:>12.2} {:>12.2}",
        "neighbour TPOT ms (whole answer)",
        report.baseline.neighbour_full_tpot_ms,
        report.speculative_run.neighbour_full_tpot_ms
    );
    println!(
        "{:<40} {:>12.2} {:>12.2}",
        "speculating stream decode tokens/s",
        report.baseline.speculating_decode_tokens_per_s,
        report.speculative_run.speculating_decode_tokens_per_s
    );
    println!(
        "{:<40} {:>12.2} {:>12.2}",
        "speculating stream tokens per step",
        report.baseline.speculating_tokens_per_step,
        report.speculative_run.speculating_tokens_per_step
    );
    println!(
        "neighbour TPOT ratio {:.3}x (above 1: slowed)",
        report.neighbour_tpot_ratio
    );
    println!(
        "speculating stream speedup {:.3}x · guesses {} accepted of {} · the neighbour's guesses {}",
        report.speculating_speedup,
        report.speculating_accepted_tokens,
        report.speculating_drafted_tokens,
        report.neighbour_drafted_tokens
    );
    println!(
        "neighbour identical output: {}",
        if report.neighbour_identical_output {
            "yes"
        } else {
            "NO"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer's first token at `ttft_ms`, then `gaps` apart.
    fn metrics(ttft_ms: f64, gaps: &[f64]) -> RequestMetrics {
        let mut answer = RequestMetrics::default();
        (answer.ttft_ms, answer.itl_ms) = (ttft_ms, gaps.to_vec());
        answer
    }

    #[test]
    fn the_neighbour_is_timed_only_while_both_decode() {
        // The other stream decodes from 10 to 40 ms; the neighbour's tokens at 12, 22, 32, 42
        // and 52: the three inside are 10 ms apart, the lone steps after 40 do not count.
        let other = metrics(10.0, &[10.0, 10.0, 10.0]);
        let neighbour = metrics(12.0, &[10.0, 10.0, 10.0, 10.0]);
        let (tpot, tokens) = overlap_tpot_ms(&neighbour, &other);
        assert_eq!(tokens, 3);
        assert!((tpot - 10.0).abs() < 1e-9, "{tpot}");
        // No overlap: nothing to time.
        assert_eq!(overlap_tpot_ms(&metrics(100.0, &[1.0]), &other), (0.0, 0));
    }
}
