//! `hearth bench --speculative ngram` / `--draft-model M`: decode speed with and without
//! speculative decoding, measured in one run.
//!
//! Two workers hold the same model, one with speculation off and one with it on (and the
//! draft model, if any); the repetitions alternate between them, in the order AB BA AB …, so a
//! change in the machine's load falls on both alike. Each repetition is one greedy chat answer
//! to a fixed prompt (`--gen-tokens` at most; the prefix cache is off, so each computes its
//! prompt): a rewrite-this-text prompt for n-gram lookup (whose guesses come from the text to
//! rewrite) and an explain prompt for a draft model. The report gives the median decode
//! tokens/s of each, their ratio (`speedup`), the acceptance rate, whether every answer was
//! identical to the baseline's (greedy decoding: it must be), and what explains the ratio: the
//! time of a decode step on each side (with speculation: the guessing plus one verify step of
//! several tokens) and the tokens a step yields (the engine's step counter, read around each
//! answer).

use anyhow::Context;
use hearth_protocol::{
    percentile_nearest_rank, ChatMessage, LoadParams, ModelInfo, Prompt, RequestMetrics, Role,
    SamplingParams, SpeculativeMode,
};
use hearth_supervisor::{Generation, Supervisor};
use serde::Serialize;

use crate::bench::{BenchArgs, BENCH_TEXT};

/// The text the rewrite prompt asks the model to copy with one change.
fn rewrite_prompt() -> String {
    format!(
        "Rewrite the following text exactly, word for word, but replace the word \"lighthouse\" \
         with \"beacon\":\n\n{BENCH_TEXT}"
    )
}

const EXPLAIN_PROMPT: &str =
    "Explain in detail how a lighthouse works, how its light is made and how sailors use it.";

/// Figures of one side (with or without speculation), medians over the repetitions.
#[derive(Debug, Serialize)]
pub struct SpeculationSide {
    pub decode_tokens_per_s: f64,
    pub tpot_ms: f64,
    pub generated_tokens: u32,
    /// Decode steps (batches after the one that computed the prompt) per answer, the time one
    /// takes (a one-token step without speculation; guessing and a verify step with it), and
    /// the tokens one yields.
    pub decode_steps: u64,
    pub ms_per_step: f64,
    pub tokens_per_step: f64,
    pub runs: Vec<RequestMetrics>,
}

/// One answer's figures and the engine steps it took.
struct Run {
    metrics: RequestMetrics,
    steps: u64,
}

#[derive(Debug, Serialize)]
pub struct SpeculationReport {
    pub model: ModelInfo,
    pub speculative: SpeculativeMode,
    pub draft_model: Option<String>,
    pub prompt: String,
    pub repetitions: u32,
    pub baseline: SpeculationSide,
    pub speculative_run: SpeculationSide,
    /// Median speculative decode tokens/s over median baseline decode tokens/s.
    pub speedup: f64,
    /// Accepted over drafted guesses, over every speculative repetition.
    pub acceptance_rate: f64,
    pub drafted_tokens: u32,
    pub accepted_tokens: u32,
    /// Every speculative answer was the same text as the baseline's.
    pub identical_output: bool,
}

fn side(runs: Vec<Run>) -> SpeculationSide {
    let median = |field: &dyn Fn(&Run) -> f64| {
        percentile_nearest_rank(&runs.iter().map(field).collect::<Vec<_>>(), 50.0)
    };
    // The prompt is computed in one step, which also gives the first token.
    let decode_steps = |run: &Run| run.steps.saturating_sub(1).max(1) as f64;
    let decode_ms =
        |run: &Run| run.metrics.tpot_ms * f64::from(run.metrics.generated_tokens.saturating_sub(1));
    SpeculationSide {
        decode_tokens_per_s: median(&|run| run.metrics.decode_tokens_per_s),
        tpot_ms: median(&|run| run.metrics.tpot_ms),
        generated_tokens: runs.first().map_or(0, |run| run.metrics.generated_tokens),
        decode_steps: median(&|run| decode_steps(run)) as u64,
        ms_per_step: median(&|run| decode_ms(run) / decode_steps(run)),
        tokens_per_step: median(&|run| {
            f64::from(run.metrics.generated_tokens.saturating_sub(1)) / decode_steps(run)
        }),
        runs: runs.into_iter().map(|run| run.metrics).collect(),
    }
}

async fn answer(
    supervisor: &Supervisor,
    prompt: &str,
    max_tokens: u32,
) -> anyhow::Result<(String, Run)> {
    let mut generation = Generation::new(Prompt::Chat {
        messages: vec![ChatMessage::new(Role::User, prompt.to_string())],
    });
    generation.sampling = SamplingParams::greedy();
    generation.max_tokens = Some(max_tokens);
    let steps_before = supervisor.stats().await?.steps;
    let (text, _, metrics) =
        crate::run::stream_answer(supervisor, generation, &mut std::io::sink()).await?;
    let steps = supervisor.stats().await?.steps - steps_before;
    Ok((text, Run { metrics, steps }))
}

pub async fn speculation(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.repetitions >= 1, "--repetitions must be at least 1");
    let baseline = crate::supervisor()?;
    let speculative = crate::supervisor()?;
    let result = compare(&baseline, &speculative, args).await;
    baseline.shutdown().await;
    speculative.shutdown().await;
    crate::bench::print_report(&result?, args.json, print_table)
}

/// The two workers of a speculation bench, loaded: `baseline` without speculation and
/// `speculative` with `with` (the prefix cache off, the mode asked for never left to the
/// planner); the model's figures and the prompt that suits the guesser (a rewrite for n-gram
/// lookup, an explanation for a draft).
pub async fn load_both(
    baseline: &Supervisor,
    speculative: &Supervisor,
    args: &BenchArgs,
    with: LoadParams,
) -> anyhow::Result<(ModelInfo, LoadParams, String)> {
    let model_path = args.model.model_path()?;
    let with = LoadParams {
        prefix_cache: false,
        draft_when_advised: false,
        ..with
    };
    let without = LoadParams {
        speculative: SpeculativeMode::Off,
        draft_model: None,
        ..with.clone()
    };
    let model = baseline
        .load(&model_path, without)
        .await
        .with_context(|| format!("cannot load {}", args.model.model.display()))?;
    speculative
        .load(&model_path, with.clone())
        .await
        .context("cannot load the model with speculative decoding")?;
    let prompt = match with.speculative {
        SpeculativeMode::Ngram => rewrite_prompt(),
        _ => EXPLAIN_PROMPT.to_string(),
    };
    Ok((model, with, prompt))
}

/// Runs `measure` on each worker in turn, AB BA AB … (`true`: the speculating one), so a
/// change in the machine's load falls on both alike: the baseline's results, the speculating
/// worker's, and whether every text `measure` returned was the same (greedy answers must be).
pub async fn alternate<R, Fut>(
    repetitions: u32,
    mut measure: impl FnMut(bool) -> Fut,
) -> anyhow::Result<(Vec<R>, Vec<R>, bool)>
where
    Fut: std::future::Future<Output = anyhow::Result<(String, R)>>,
{
    let (mut baseline, mut speculating) = (Vec::new(), Vec::new());
    let mut first: Option<String> = None;
    let mut identical = true;
    for repetition in 0..repetitions {
        let order = if repetition % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for speculates in order {
            let (text, result) = measure(speculates).await?;
            match &first {
                None => first = Some(text),
                Some(first) => identical &= *first == text,
            }
            if speculates {
                speculating.push(result);
            } else {
                baseline.push(result);
            }
        }
    }
    Ok((baseline, speculating, identical))
}

async fn compare(
    baseline: &Supervisor,
    speculative: &Supervisor,
    args: &BenchArgs,
) -> anyhow::Result<SpeculationReport> {
    let (model, with, prompt) =
        load_both(baseline, speculative, args, args.model.load_params()).await?;
    let gen_tokens = args.gen_tokens();
    // Warm-up: page faults and thread pools of both workers.
    answer(baseline, &prompt, 4).await?;
    answer(speculative, &prompt, 4).await?;
    let (base_runs, spec_runs, identical_output) = alternate(args.repetitions, |speculating| {
        let worker = if speculating { speculative } else { baseline };
        answer(worker, &prompt, gen_tokens)
    })
    .await?;
    let drafted_tokens: u32 = spec_runs.iter().map(|run| run.metrics.drafted_tokens).sum();
    let accepted_tokens: u32 = spec_runs
        .iter()
        .map(|run| run.metrics.accepted_tokens)
        .sum();
    let baseline = side(base_runs);
    let speculative_run = side(spec_runs);
    Ok(SpeculationReport {
        model,
        speculative: with.speculative,
        draft_model: with
            .draft_model
            .as_ref()
            .and_then(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned()),
        prompt,
        repetitions: args.repetitions,
        speedup: if baseline.decode_tokens_per_s > 0.0 {
            speculative_run.decode_tokens_per_s / baseline.decode_tokens_per_s
        } else {
            0.0
        },
        acceptance_rate: if drafted_tokens > 0 {
            f64::from(accepted_tokens) / f64::from(drafted_tokens)
        } else {
            0.0
        },
        drafted_tokens,
        accepted_tokens,
        identical_output,
        baseline,
        speculative_run,
    })
}

fn print_table(report: &SpeculationReport) {
    println!(
        "{} · speculative {}{} · {} threads · {} repetitions each, alternating (medians)",
        report.model.file_name,
        report.speculative.as_str(),
        report
            .draft_model
            .as_ref()
            .map(|draft| format!(" ({draft})"))
            .unwrap_or_default(),
        report.model.n_threads,
        report.repetitions
    );
    println!("{:<26} {:>12} {:>12}", "metric", "without", "with");
    println!(
        "{:<26} {:>12.2} {:>12.2}",
        "decode tokens/s",
        report.baseline.decode_tokens_per_s,
        report.speculative_run.decode_tokens_per_s
    );
    println!(
        "{:<26} {:>12.2} {:>12.2}",
        "TPOT ms", report.baseline.tpot_ms, report.speculative_run.tpot_ms
    );
    println!(
        "{:<26} {:>12} {:>12}",
        "generated tokens",
        report.baseline.generated_tokens,
        report.speculative_run.generated_tokens
    );
    println!(
        "{:<26} {:>12} {:>12}",
        "decode steps", report.baseline.decode_steps, report.speculative_run.decode_steps
    );
    println!(
        "{:<26} {:>12.2} {:>12.2}",
        "ms per step", report.baseline.ms_per_step, report.speculative_run.ms_per_step
    );
    println!(
        "{:<26} {:>12.2} {:>12.2}",
        "tokens per step", report.baseline.tokens_per_step, report.speculative_run.tokens_per_step
    );
    println!("speedup {:.3}x", report.speedup);
    println!(
        "acceptance rate {:.3} ({} of {} guesses)",
        report.acceptance_rate, report.accepted_tokens, report.drafted_tokens
    );
    println!(
        "identical output: {}",
        if report.identical_output { "yes" } else { "NO" }
    );
}
