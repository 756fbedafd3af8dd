//! The baseline for `hearth bench`: the smallest greedy loop over `llama-cpp-2`, with no
//! worker process, no scheduler and no detokenization. Load, prefill the prompt in one batch,
//! then decode one token at a time. `scripts/bench-baseline` runs it beside `hearth bench`
//! (same model, threads, context, prompt and length) and prints both and their ratio.
//!
//! Usage: baseline_decode MODEL [PROMPT_TOKENS] [GEN_TOKENS] [N_CTX] [N_THREADS]
//! Prints one JSON object: prefill_tokens_per_s, decode_tokens_per_s.

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

/// The same text `hearth bench` cuts its prompt from.
const BENCH_TEXT: &str = "The history of the lighthouse is a history of light and of the people who kept it. \
Early towers burned wood and coal in open fires; later keepers trimmed wicks of oil lamps through the night, \
and in the nineteenth century the Fresnel lens gathered a small flame into a beam that reached twenty miles to sea. \
Each station had its own pattern of flashes so that a sailor could tell one coast from another in the dark. ";

fn arg<T: std::str::FromStr>(args: &[String], index: usize, default: T) -> T {
    args.get(index)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args
        .get(1)
        .ok_or("usage: baseline_decode MODEL [PROMPT_TOKENS] [GEN_TOKENS] [N_CTX] [N_THREADS]")?;
    let prompt_tokens: usize = arg(&args, 2, 512);
    let gen_tokens: usize = arg(&args, 3, 128);
    let n_ctx: u32 = arg(&args, 4, 4096);
    let n_threads: i32 = arg(&args, 5, hearth_engine::default_threads() as i32);

    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, model_path, &LlamaModelParams::default())?;
    let context_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(512)
        .with_n_threads(n_threads)
        .with_n_threads_batch(n_threads);
    let mut context = model.new_context(&backend, context_params)?;

    let vocab = model.vocab();
    let unit = vocab.tokenize(BENCH_TEXT.as_bytes(), false, true);
    let mut prompt = vocab.tokenize(b"", true, true);
    while prompt.len() < prompt_tokens {
        prompt.extend_from_slice(&unit);
    }
    prompt.truncate(prompt_tokens);

    let mut sampler = LlamaSampler::greedy();
    let mut batch = LlamaBatch::new(512, 1);
    // Warm-up, as hearth bench does: a few tokens, then clear the cache.
    batch.add_sequence(&prompt[..16.min(prompt.len())], 0, false)?;
    context.decode(&mut batch)?;
    context.clear_kv_cache();

    let start = Instant::now();
    let mut position = 0i32;
    for chunk in prompt.chunks(512) {
        batch.clear();
        for (offset, token) in chunk.iter().enumerate() {
            let is_last = position as usize + offset + 1 == prompt.len();
            batch.add(*token, position + offset as i32, &[0], is_last)?;
        }
        context.decode(&mut batch)?;
        position += chunk.len() as i32;
    }
    let mut token = sampler.sample(&context, batch.n_tokens() - 1);
    let first_token_at = Instant::now();
    for _ in 1..gen_tokens {
        batch.clear();
        batch.add(token, position, &[0], true)?;
        position += 1;
        context.decode(&mut batch)?;
        token = sampler.sample(&context, 0);
    }
    let end = Instant::now();
    let prefill_s = (first_token_at - start).as_secs_f64();
    let decode_s = (end - first_token_at).as_secs_f64();
    println!(
        "{{\"prefill_tokens_per_s\": {:.3}, \"decode_tokens_per_s\": {:.3}, \"prompt_tokens\": {}, \"gen_tokens\": {}, \"n_threads\": {}}}",
        prompt.len() as f64 / prefill_s,
        (gen_tokens - 1) as f64 / decode_s,
        prompt.len(),
        gen_tokens,
        n_threads
    );
    Ok(())
}
