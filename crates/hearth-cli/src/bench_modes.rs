//! The scheduler benchmarks of `hearth bench`:
//! - `--concurrency 1,2,4,8`: that many streams at once. Aggregate decode tokens/s is counted
//!   over the window in which every stream is decoding (from the last stream's first token to
//!   the first stream's last token), so staggered prompts do not dilute it; per-stream ITL
//!   p50/p95 and TTFT are reported beside it. The prefix cache is off.
//! - `--turns N` (`--conversations K`): a chat of N turns (about 150 tokens each), or K chats
//!   with system prompts of their own taking turns (A1 B1 A2 B2 …) through the scheduler;
//!   every turn's TTFT with prefix reuse (host-memory and disk tiers as in the app, the disk
//!   in a folder of the run's own), paired with the same prompt computed in full at once by a
//!   second worker with the cache off.
//! - `--interference N`: one stream decodes alone; then again while an N-token prompt arrives
//!   on a second sequence. Reports the first stream's ITL p95 in both runs and their ratio.

use anyhow::Context;
use hearth_protocol::{
    percentile_nearest_rank, CacheTier, ChatMessage, LoadParams, ModelInfo, Prompt, RequestMetrics,
    Role, SamplingParams,
};
use hearth_supervisor::{Generation, GenerationEvent, Supervisor};
use serde::Serialize;

use crate::bench::{bench_prompt, fixed_length_generation, BenchArgs};

/// Prompt length of each stream in the concurrency and interference benches: short, so the
/// streams reach their decode phase together.
const SHORT_PROMPT_TOKENS: u32 = 64;
/// Tokens the decoding stream of the interference bench generates.
const INTERFERENCE_GEN_TOKENS: u32 = 256;
/// The long prompt arrives once the decoding stream has produced this many tokens.
const INTERFERENCE_AFTER_TOKENS: usize = 16;
/// Longest answer per turn of the multi-turn bench.
const TURN_ANSWER_TOKENS: u32 = 48;
/// Spare context per stream beyond prompt and answer.
const CONTEXT_SLACK_TOKENS: u32 = 64;

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn load(
    supervisor: &Supervisor,
    args: &BenchArgs,
    params: LoadParams,
) -> anyhow::Result<ModelInfo> {
    supervisor
        .load(&args.model.model, params)
        .await
        .with_context(|| format!("cannot load {}", args.model.model.display()))
}

/// Token arrival times (ms since the request arrived) rebuilt from TTFT and the ITL gaps.
pub fn token_times_ms(metrics: &RequestMetrics) -> Vec<f64> {
    let mut time = metrics.ttft_ms;
    let mut times = vec![time];
    for gap in &metrics.itl_ms {
        time += gap;
        times.push(time);
    }
    times
}

/// One level of the concurrency bench.
#[derive(Debug, Serialize)]
pub struct ConcurrencyLevel {
    pub concurrency: u32,
    pub aggregate_decode_tokens_per_s: f64,
    /// Median over streams of each stream's ITL p50 and p95.
    pub itl_p50_ms: f64,
    pub itl_p95_ms: f64,
    pub ttft_mean_ms: f64,
    pub ttft_max_ms: f64,
    pub per_stream_decode_tokens_per_s: f64,
    /// Scheduler steps the level took (fewer than streams × tokens: they share steps).
    pub steps: u64,
}

/// Aggregate decode rate over the window where every stream is decoding.
pub fn aggregate_decode_rate(runs: &[RequestMetrics]) -> f64 {
    let times: Vec<Vec<f64>> = runs.iter().map(token_times_ms).collect();
    let window_start = times
        .iter()
        .filter_map(|t| t.first())
        .copied()
        .fold(f64::MIN, f64::max);
    let window_end = times
        .iter()
        .filter_map(|t| t.last())
        .copied()
        .fold(f64::MAX, f64::min);
    if window_end <= window_start {
        return 0.0;
    }
    // Gaps that end inside the window: tokens produced while all streams decode.
    let tokens = times
        .iter()
        .flat_map(|t| t.iter().skip(1))
        .filter(|time| **time > window_start && **time <= window_end)
        .count();
    tokens as f64 / ((window_end - window_start) / 1000.0)
}

pub async fn concurrency(args: &BenchArgs) -> anyhow::Result<()> {
    let levels = &args.concurrency;
    anyhow::ensure!(
        levels.iter().all(|c| *c >= 1),
        "concurrency levels must be at least 1"
    );
    let max_level = levels.iter().copied().max().unwrap_or(1);
    let prompt_tokens = args.prompt_tokens.unwrap_or(SHORT_PROMPT_TOKENS);
    let gen_tokens = args.gen_tokens();
    let per_stream = prompt_tokens + gen_tokens + CONTEXT_SLACK_TOKENS;
    let params = LoadParams {
        n_parallel: max_level,
        n_ctx: args.model.n_ctx.max(per_stream * max_level),
        prefix_cache: false,
        // A level's prompts reach the worker a moment apart, so the first stream is already
        // decoding when the others arrive. Paced prefill would feed them in over many steps,
        // and the streams might never all decode at once: this measures decoding, so each
        // prompt goes in whole with the next step unless --prefill-chunk says otherwise.
        prefill_chunk: args
            .model
            .prefill_chunk
            .or(Some(prompt_tokens.saturating_mul(max_level))),
        ..args.model.load_params()
    };
    let supervisor = crate::supervisor()?;
    let result = async {
        let model = load(&supervisor, args, params).await?;
        let prompt = bench_prompt(&supervisor, prompt_tokens).await?;
        crate::bench::measure(&supervisor, &prompt[..prompt.len().min(16)], 4).await?;
        let mut report = Vec::new();
        for &level in levels {
            let steps_before = supervisor.stats().await?.steps;
            let mut streams = Vec::new();
            for _ in 0..level {
                streams.push(
                    supervisor
                        .generate(fixed_length_generation(&prompt, gen_tokens))
                        .await?,
                );
            }
            let mut runs = Vec::new();
            for stream in streams {
                runs.push(collect_metrics(stream).await?);
            }
            let steps = supervisor.stats().await?.steps - steps_before;
            let p50s: Vec<f64> = runs.iter().map(|m| m.itl_p50_ms).collect();
            let p95s: Vec<f64> = runs.iter().map(|m| m.itl_p95_ms).collect();
            let per_stream: Vec<f64> = runs.iter().map(|m| m.decode_tokens_per_s).collect();
            report.push(ConcurrencyLevel {
                concurrency: level,
                aggregate_decode_tokens_per_s: aggregate_decode_rate(&runs),
                itl_p50_ms: percentile_nearest_rank(&p50s, 50.0),
                itl_p95_ms: percentile_nearest_rank(&p95s, 50.0),
                ttft_mean_ms: runs.iter().map(|m| m.ttft_ms).sum::<f64>() / runs.len() as f64,
                ttft_max_ms: runs.iter().map(|m| m.ttft_ms).fold(0.0, f64::max),
                per_stream_decode_tokens_per_s: percentile_nearest_rank(&per_stream, 50.0),
                steps,
            });
        }
        anyhow::Ok((model, report))
    }
    .await;
    supervisor.shutdown().await;
    let (model, report) = result?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "{} · {} threads · prompt {prompt_tokens} tokens · {gen_tokens} tokens per stream",
        model.file_name, model.n_threads
    );
    println!(
        "{:>11} {:>14} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "concurrency", "aggregate t/s", "vs 1", "ITL p50", "ITL p95", "TTFT mean", "steps"
    );
    let single = report
        .first()
        .map(|l| l.aggregate_decode_tokens_per_s)
        .unwrap_or(0.0);
    for level in &report {
        println!(
            "{:>11} {:>14.1} {:>9.2}x {:>8.1}ms {:>8.1}ms {:>8.0}ms {:>7}",
            level.concurrency,
            level.aggregate_decode_tokens_per_s,
            level.aggregate_decode_tokens_per_s / single.max(f64::MIN_POSITIVE),
            level.itl_p50_ms,
            level.itl_p95_ms,
            level.ttft_mean_ms,
            level.steps
        );
    }
    Ok(())
}

async fn collect_metrics(
    mut stream: hearth_supervisor::GenerationStream,
) -> anyhow::Result<RequestMetrics> {
    while let Some(event) = stream.next().await {
        if let GenerationEvent::Done { metrics, .. } = event? {
            return Ok(metrics);
        }
    }
    anyhow::bail!("the generation ended without a result")
}

/// Text of the user's message in turn `turn`: about 100 tokens, different every turn.
fn turn_message(turn: u32) -> String {
    let topics = [
        "lighthouses",
        "tides",
        "sailing ships",
        "maps",
        "storms",
        "harbours",
        "fishing boats",
        "compasses",
        "stars used for navigation",
        "coastal birds",
        "shipwrecks",
        "canals",
    ];
    let topic = topics[turn as usize % topics.len()];
    format!(
        "Turn {turn}. I am writing a short guide for visitors to a small coastal town and I \
         would like your help with the section about {topic}. Please describe {topic} in two \
         or three plain sentences that a curious child could follow, mention one surprising \
         fact, and avoid lists, headings or technical words. Keep the tone warm and simple, \
         as if you were talking to a neighbour over a garden wall on a quiet afternoon."
    )
}

/// The system prompt of conversation `index` of the multi-turn bench: each its own, so two
/// conversations share only the chat template's opening tokens.
fn conversation_system_prompt(index: u32) -> String {
    let personas = [
        "a friendly local guide who writes short, clear paragraphs",
        "a ship's cook who answers every question in a few warm sentences",
        "a lighthouse keeper who writes calm notes about the sea and the weather",
        "a village librarian who explains things patiently to young readers",
        "a retired sailor who tells short stories about the places he has seen",
        "a harbour master who gives practical advice in plain words",
        "a museum guide who loves surprising details about the past",
        "a fisherman's daughter who describes the coast with great affection",
    ];
    let persona = personas[index as usize % personas.len()];
    match index as usize / personas.len() {
        0 => format!("You are {persona}."),
        round => format!("You are {persona} (desk {round})."),
    }
}

#[derive(Debug, Serialize)]
pub struct TurnReport {
    /// Which conversation (0-based; always 0 without `--conversations`).
    pub conversation: u32,
    pub turn: u32,
    pub prompt_tokens: u32,
    /// Prompt tokens reused from the cache in the run with prefix reuse.
    pub cached_prompt_tokens: Option<u32>,
    /// Which tier of the KV cache served them (slot, ram, disk or none).
    pub cache_tier: Option<CacheTier>,
    pub ttft_ms_prefix_cache: Option<f64>,
    pub ttft_ms_no_prefix_cache: f64,
}

#[derive(Debug, Serialize)]
pub struct TurnsReport {
    pub conversations: u32,
    /// Whether the engine was restarted before the last turn.
    pub restarted_before_last_turn: bool,
    pub turns: Vec<TurnReport>,
    /// TTFT of the last turn with reuse divided by without (smaller is better); with several
    /// conversations, the worst of their last turns.
    pub last_turn_ttft_ratio: Option<f64>,
}

async fn chat_turn(
    supervisor: &Supervisor,
    messages: &[ChatMessage],
    max_tokens: u32,
) -> anyhow::Result<(String, RequestMetrics)> {
    let mut generation = Generation::new(Prompt::Chat {
        messages: messages.to_vec(),
    });
    generation.sampling = SamplingParams::greedy();
    generation.max_tokens = Some(max_tokens);
    let (text, _, metrics) =
        crate::run::stream_answer(supervisor, generation, &mut std::io::sink()).await?;
    Ok((text, metrics))
}

pub async fn turns(args: &BenchArgs, turns: u32) -> anyhow::Result<()> {
    anyhow::ensure!(turns >= 1, "--turns must be at least 1");
    let conversations = args.conversations;
    anyhow::ensure!(conversations >= 1, "--conversations must be at least 1");
    let with_reuse = !args.model.no_prefix_cache;
    // The disk tier, as the app has one: a folder of this run's own, so files of an earlier
    // run never serve a first turn, removed afterwards.
    let kv_dir = std::env::temp_dir().join(format!("hearth-bench-kv-{}", std::process::id()));
    let supervisor = crate::supervisor()?;
    // The baseline: a second worker with the cache off, asked each prompt right after the
    // first one answered it, so both figures of a turn share the machine's load of the moment
    // (a shared machine's load drifts over a run of minutes).
    let baseline = crate::supervisor()?;
    let result = async {
        // The conversations, generated once (with reuse if asked, else without), taking turns.
        let mut histories: Vec<Vec<ChatMessage>> = (0..conversations)
            .map(|index| {
                vec![ChatMessage::new(
                    Role::System,
                    conversation_system_prompt(index),
                )]
            })
            .collect();
        let mut with_cache: Vec<(u32, u32, RequestMetrics)> = Vec::new();
        let mut without_cache = Vec::new();
        let with_reuse_params = LoadParams {
            prefix_cache: with_reuse,
            kv_disk_dir: with_reuse.then(|| kv_dir.clone()),
            ..args.model.load_params()
        };
        load(&supervisor, args, with_reuse_params.clone()).await?;
        if with_reuse {
            let no_reuse = LoadParams {
                prefix_cache: false,
                ..args.model.load_params()
            };
            load(&baseline, args, no_reuse).await?;
        }
        for turn in 1..=turns {
            if args.restart && turn == turns {
                // A new worker: nothing of the old one's memory survives, only its files.
                supervisor.shutdown().await;
                load(&supervisor, args, with_reuse_params.clone()).await?;
            }
            for (index, history) in (0u32..).zip(histories.iter_mut()) {
                history.push(ChatMessage::new(Role::User, turn_message(turn)));
                let (answer, metrics) = chat_turn(&supervisor, history, TURN_ANSWER_TOKENS).await?;
                // The same prompt computed in full, at once.
                let ttft_without = if with_reuse {
                    chat_turn(&baseline, history, 1).await?.1.ttft_ms
                } else {
                    metrics.ttft_ms
                };
                without_cache.push(ttft_without);
                with_cache.push((index, turn, metrics));
                history.push(ChatMessage::new(Role::Assistant, answer));
            }
        }
        let report: Vec<TurnReport> = with_cache
            .iter()
            .zip(&without_cache)
            .map(|((index, turn, metrics), ttft_off)| TurnReport {
                conversation: *index,
                turn: *turn,
                prompt_tokens: metrics.prompt_tokens,
                cached_prompt_tokens: with_reuse.then_some(metrics.cached_prompt_tokens),
                cache_tier: with_reuse.then_some(metrics.prompt_cache_tier),
                ttft_ms_prefix_cache: with_reuse.then_some(metrics.ttft_ms),
                ttft_ms_no_prefix_cache: *ttft_off,
            })
            .collect();
        anyhow::Ok(report)
    }
    .await;
    supervisor.shutdown().await;
    baseline.shutdown().await;
    let _ = std::fs::remove_dir_all(&kv_dir);
    let turns = result?;
    let last_turn = turns.iter().map(|t| t.turn).max();
    let last_turn_ttft_ratio = turns
        .iter()
        .filter(|t| Some(t.turn) == last_turn)
        .filter_map(|t| {
            t.ttft_ms_prefix_cache
                .map(|on| on / t.ttft_ms_no_prefix_cache)
        })
        .max_by(f64::total_cmp);
    let report = TurnsReport {
        conversations,
        restarted_before_last_turn: args.restart,
        turns,
        last_turn_ttft_ratio,
    };
    if args.json {
        return print_json(&report);
    }
    println!(
        "{:>5} {:>5} {:>14} {:>8} {:>5} {:>18} {:>18}",
        "conv", "turn", "prompt tokens", "cached", "tier", "TTFT reuse (ms)", "TTFT no reuse (ms)"
    );
    for turn in &report.turns {
        println!(
            "{:>5} {:>5} {:>14} {:>8} {:>5} {:>18} {:>18.1}",
            turn.conversation,
            turn.turn,
            turn.prompt_tokens,
            turn.cached_prompt_tokens
                .map_or("-".to_string(), |c| c.to_string()),
            turn.cache_tier.map_or("-", CacheTier::as_str),
            turn.ttft_ms_prefix_cache
                .map_or("-".to_string(), |t| format!("{t:.1}")),
            turn.ttft_ms_no_prefix_cache
        );
    }
    if report.restarted_before_last_turn {
        println!("the engine was restarted before the last turn");
    }
    if let Some(ratio) = report.last_turn_ttft_ratio {
        println!("last turn: TTFT with reuse = {ratio:.3} x TTFT without (worst conversation)");
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct InterferenceReport {
    pub long_prompt_tokens: u32,
    pub solo_itl_p95_ms: f64,
    pub with_long_prompt_itl_p95_ms: f64,
    /// with / solo: how much the long prompt raised the decoding stream's ITL p95.
    pub itl_p95_ratio: f64,
    pub solo_itl_max_ms: f64,
    pub with_long_prompt_itl_max_ms: f64,
    /// TTFT of the long prompt while the other stream decoded.
    pub long_prompt_ttft_ms: f64,
}

pub async fn interference(args: &BenchArgs, long_prompt_tokens: u32) -> anyhow::Result<()> {
    let prompt_tokens = args.prompt_tokens.unwrap_or(SHORT_PROMPT_TOKENS);
    let gen_tokens = args.gen_tokens.unwrap_or(INTERFERENCE_GEN_TOKENS);
    let needed = long_prompt_tokens + prompt_tokens + gen_tokens + 2 * CONTEXT_SLACK_TOKENS;
    let params = LoadParams {
        n_parallel: 2,
        n_ctx: args.model.n_ctx.max(2 * needed),
        prefix_cache: false,
        ..args.model.load_params()
    };
    let supervisor = crate::supervisor()?;
    let result = async {
        load(&supervisor, args, params).await?;
        let short = bench_prompt(&supervisor, prompt_tokens).await?;
        let long = bench_prompt(&supervisor, long_prompt_tokens).await?;
        crate::bench::measure(&supervisor, &short[..short.len().min(16)], 4).await?;
        let solo = crate::bench::measure(&supervisor, &short, gen_tokens).await?;

        let mut decoding = supervisor
            .generate(fixed_length_generation(&short, gen_tokens))
            .await?;
        let mut seen_tokens = 0;
        while seen_tokens < INTERFERENCE_AFTER_TOKENS {
            match decoding.next().await {
                Some(Ok(GenerationEvent::Text { .. })) => seen_tokens += 1,
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => anyhow::bail!("the decoding stream ended early"),
            }
        }
        let arriving = supervisor
            .generate(fixed_length_generation(&long, 4))
            .await?;
        let long_run = tokio::spawn(collect_metrics(arriving));
        let with_long = collect_metrics(decoding).await?;
        let long_metrics = long_run.await.context("the long prompt's task failed")??;
        anyhow::Ok(InterferenceReport {
            long_prompt_tokens,
            solo_itl_p95_ms: solo.itl_p95_ms,
            with_long_prompt_itl_p95_ms: with_long.itl_p95_ms,
            itl_p95_ratio: with_long.itl_p95_ms / solo.itl_p95_ms.max(f64::MIN_POSITIVE),
            solo_itl_max_ms: solo.itl_max_ms,
            with_long_prompt_itl_max_ms: with_long.itl_max_ms,
            long_prompt_ttft_ms: long_metrics.ttft_ms,
        })
    }
    .await;
    supervisor.shutdown().await;
    let report = result?;
    if args.json {
        return print_json(&report);
    }
    println!("a {long_prompt_tokens}-token prompt arriving while another stream decodes:");
    println!(
        "  ITL p95 solo              {:>9.2} ms",
        report.solo_itl_p95_ms
    );
    println!(
        "  ITL p95 with long prompt  {:>9.2} ms  ({:.2}x)",
        report.with_long_prompt_itl_p95_ms, report.itl_p95_ratio
    );
    println!(
        "  ITL max solo / with       {:>9.2} / {:.2} ms",
        report.solo_itl_max_ms, report.with_long_prompt_itl_max_ms
    );
    println!(
        "  long prompt TTFT          {:>9.0} ms",
        report.long_prompt_ttft_ms
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(ttft_ms: f64, gaps: &[f64]) -> RequestMetrics {
        RequestMetrics {
            ttft_ms,
            itl_ms: gaps.to_vec(),
            ..RequestMetrics::default()
        }
    }

    #[test]
    fn aggregate_rate_counts_only_the_window_where_all_decode() {
        // Stream a: tokens at 0,10,20,30,40 ms. Stream b: 20,30,40,50.
        let a = metrics(0.0, &[10.0, 10.0, 10.0, 10.0]);
        let b = metrics(20.0, &[10.0, 10.0, 10.0]);
        // Window 20..40 ms: a's tokens at 30, 40 and b's at 30, 40 → 4 tokens in 20 ms.
        assert!((aggregate_decode_rate(&[a, b]) - 200.0).abs() < 1e-9);
        assert_eq!(
            aggregate_decode_rate(&[metrics(0.0, &[]), metrics(5.0, &[])]),
            0.0
        );
    }
}
