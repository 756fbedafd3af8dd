//! `hearth bench`: prefill and decode speed, TTFT, TPOT and inter-token latency of the real
//! engine, through the worker process exactly as the app uses it.
//!
//! Modes:
//! - default: one stream. The prompt is `--prompt-tokens` tokens of fixed English text;
//!   generation is greedy with end-of-generation ignored, so every repetition generates exactly
//!   `--gen-tokens` tokens. The prefix cache is off so each repetition computes its whole
//!   prompt. One short warm-up generation runs first (page faults, thread pool start).
//! - `--concurrency 1,2,4,8`, `--turns N`, `--interference N`: see `bench_modes`.
//! - `--speculative ngram|draft`, `--draft-model M`: with and without speculative decoding,
//!   see `bench_speculative`; with `--neighbour`, a stream that does not speculate beside one
//!   that does, see `bench_neighbour`.

use anyhow::Context;
use clap::Args;
use hearth_protocol::{
    percentile_nearest_rank, LoadParams, ModelInfo, Prompt, RequestMetrics, SamplingParams,
    SpeculativeMode,
};
use hearth_supervisor::{Generation, Supervisor};
use serde::Serialize;

use crate::args::ModelArgs;

/// Text the benchmark prompt is cut from (tokenized, then repeated to the requested length).
pub const BENCH_TEXT: &str = "The history of the lighthouse is a history of light and of the people who kept it. \
Early towers burned wood and coal in open fires; later keepers trimmed wicks of oil lamps through the night, \
and in the nineteenth century the Fresnel lens gathered a small flame into a beam that reached twenty miles to sea. \
Each station had its own pattern of flashes so that a sailor could tell one coast from another in the dark. ";

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt length in tokens (default: 512; 64 with --concurrency and --interference).
    #[arg(long)]
    pub prompt_tokens: Option<u32>,
    /// Tokens generated per stream (default: 128; 256 with --interference).
    #[arg(long)]
    pub gen_tokens: Option<u32>,
    /// Run this many streams at once, for each level in the list (for example 1,2,4,8).
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Vec<u32>,
    /// Run a chat of this many turns and report each turn's TTFT with and without prefix reuse
    /// (only without when --no-prefix-cache is given).
    #[arg(long)]
    pub turns: Option<u32>,
    /// With --turns: this many conversations, each with its own system prompt, taking turns
    /// (A1 B1 A2 B2 …) through the scheduler (give --parallel to share them among slots).
    #[arg(long, default_value_t = 1, requires = "turns")]
    pub conversations: u32,
    /// With --turns: restart the engine (a new worker process) before the last turn, so it
    /// can reuse only what the disk tier of the KV cache kept (a folder of its own, removed
    /// afterwards).
    #[arg(long, requires = "turns")]
    pub restart: bool,
    /// While one stream decodes, send a prompt of this many tokens on another sequence.
    #[arg(long)]
    pub interference: Option<u32>,
    /// With --speculative/--draft-model: measure a second stream that does not speculate
    /// beside the one that does, against the same pair without speculation (the neighbour's
    /// TPOT ratio).
    #[arg(long)]
    pub neighbour: bool,
    /// Measured repetitions (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub repetitions: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    pub fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens.unwrap_or(DEFAULT_PROMPT_TOKENS)
    }
    pub fn gen_tokens(&self) -> u32 {
        self.gen_tokens.unwrap_or(DEFAULT_GEN_TOKENS)
    }
}

/// Default prompt and generation lengths of the single-stream bench (the baseline's too).
pub const DEFAULT_PROMPT_TOKENS: u32 = 512;
pub const DEFAULT_GEN_TOKENS: u32 = 128;

/// Median figures over the repetitions, plus each repetition.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: ModelInfo,
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
    pub repetitions: u32,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p95_ms: f64,
    pub itl_max_ms: f64,
    pub e2e_ms: f64,
    pub runs: Vec<RequestMetrics>,
}

fn median(runs: &[RequestMetrics], field: impl Fn(&RequestMetrics) -> f64) -> f64 {
    let values: Vec<f64> = runs.iter().map(field).collect();
    percentile_nearest_rank(&values, 50.0)
}

/// Exactly `count` tokens of benchmark text.
pub async fn bench_prompt(supervisor: &Supervisor, count: u32) -> anyhow::Result<Vec<i32>> {
    let unit = supervisor.tokenize(BENCH_TEXT, false).await?;
    anyhow::ensure!(!unit.is_empty(), "the model's tokenizer produced no tokens");
    let mut tokens = supervisor.tokenize("", true).await?;
    while tokens.len() < count as usize {
        tokens.extend_from_slice(&unit);
    }
    tokens.truncate(count as usize);
    Ok(tokens)
}

/// A greedy generation of exactly `gen_tokens` tokens from token ids.
pub fn fixed_length_generation(prompt: &[i32], gen_tokens: u32) -> Generation {
    let mut generation = Generation::new(Prompt::Tokens {
        tokens: prompt.to_vec(),
    });
    generation.sampling = SamplingParams::greedy();
    generation.max_tokens = Some(gen_tokens);
    generation.ignore_eos = true;
    generation
}

pub async fn measure(
    supervisor: &Supervisor,
    prompt: &[i32],
    gen_tokens: u32,
) -> anyhow::Result<RequestMetrics> {
    let generation = fixed_length_generation(prompt, gen_tokens);
    let (_, _, metrics) =
        crate::run::stream_answer(supervisor, generation, &mut std::io::sink()).await?;
    Ok(metrics)
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let modes = usize::from(!args.concurrency.is_empty())
        + usize::from(args.turns.is_some())
        + usize::from(args.interference.is_some());
    anyhow::ensure!(
        modes <= 1,
        "choose one of --concurrency, --turns and --interference"
    );
    if !args.concurrency.is_empty() {
        return crate::bench_modes::concurrency(&args).await;
    }
    if let Some(turns) = args.turns {
        return crate::bench_modes::turns(&args, turns).await;
    }
    if let Some(long_prompt) = args.interference {
        return crate::bench_modes::interference(&args, long_prompt).await;
    }
    if args.model.speculative_mode() != SpeculativeMode::Off {
        if args.neighbour {
            return crate::bench_neighbour::neighbour(&args).await;
        }
        return crate::bench_speculative::speculation(&args).await;
    }
    anyhow::ensure!(
        !args.neighbour,
        "--neighbour needs --speculative ngram|draft or --draft-model"
    );
    anyhow::ensure!(
        args.prompt_tokens() >= 1,
        "--prompt-tokens must be at least 1"
    );
    anyhow::ensure!(
        args.gen_tokens() >= 2,
        "--gen-tokens must be at least 2 (to measure decode)"
    );
    anyhow::ensure!(args.repetitions >= 1, "--repetitions must be at least 1");
    let supervisor = crate::supervisor()?;
    let result = bench_with(&supervisor, &args).await;
    supervisor.shutdown().await;
    print_report(&result?, args.json, print_table)
}

/// Prints a bench's report: one JSON object with `--json`, else as `table` lays it out.
pub fn print_report<T: Serialize>(report: &T, json: bool, table: fn(&T)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        table(report);
    }
    Ok(())
}

async fn bench_with(supervisor: &Supervisor, args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let params = LoadParams {
        prefix_cache: false,
        ..args.model.load_params()
    };
    let model = supervisor
        .load(&args.model.model_path()?, params)
        .await
        .with_context(|| format!("cannot load {}", args.model.model.display()))?;
    anyhow::ensure!(
        args.prompt_tokens() + args.gen_tokens() <= model.n_ctx_per_sequence,
        "--prompt-tokens + --gen-tokens ({}) exceed the context ({}); raise --ctx",
        args.prompt_tokens() + args.gen_tokens(),
        model.n_ctx_per_sequence
    );
    let prompt = bench_prompt(supervisor, args.prompt_tokens()).await?;
    measure(supervisor, &prompt[..prompt.len().min(16)], 4).await?;
    let mut runs = Vec::new();
    for _ in 0..args.repetitions {
        runs.push(measure(supervisor, &prompt, args.gen_tokens()).await?);
    }
    Ok(BenchReport {
        model,
        prompt_tokens: args.prompt_tokens(),
        gen_tokens: args.gen_tokens(),
        repetitions: args.repetitions,
        prefill_tokens_per_s: median(&runs, |m| m.prefill_tokens_per_s),
        decode_tokens_per_s: median(&runs, |m| m.decode_tokens_per_s),
        ttft_ms: median(&runs, |m| m.ttft_ms),
        tpot_ms: median(&runs, |m| m.tpot_ms),
        itl_p50_ms: median(&runs, |m| m.itl_p50_ms),
        itl_p95_ms: median(&runs, |m| m.itl_p95_ms),
        itl_max_ms: median(&runs, |m| m.itl_max_ms),
        e2e_ms: median(&runs, |m| m.e2e_ms),
        runs,
    })
}

fn print_table(report: &BenchReport) {
    println!(
        "{} · {} threads · prompt {} tokens · generate {} tokens · {} repetitions (medians)",
        report.model.file_name,
        report.model.n_threads,
        report.prompt_tokens,
        report.gen_tokens,
        report.repetitions
    );
    println!("{:<22} {:>12}", "metric", "value");
    let rows = [
        ("prefill tokens/s", report.prefill_tokens_per_s),
        ("decode tokens/s", report.decode_tokens_per_s),
        ("TTFT ms", report.ttft_ms),
        ("TPOT ms", report.tpot_ms),
        ("ITL p50 ms", report.itl_p50_ms),
        ("ITL p95 ms", report.itl_p95_ms),
        ("ITL max ms", report.itl_max_ms),
        ("end-to-end ms", report.e2e_ms),
    ];
    for (name, value) in rows {
        println!("{name:<22} {value:>12.2}");
    }
}
