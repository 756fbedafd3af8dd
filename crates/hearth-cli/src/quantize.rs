//! `hearth quantize IN OUT TYPE`: llama.cpp's quantizer over a GGUF file, in this process
//! (no model is loaded, so there is no worker to protect), with a progress line on stderr.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use hearth_engine::quantize::{self, QuantizeJob};

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The GGUF file to read.
    pub input: PathBuf,
    /// The GGUF file to write.
    pub output: PathBuf,
    /// The output's type: F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_1, … (a quantized
    /// input may be converted too, e.g. to F16).
    #[arg(value_name = "TYPE")]
    pub file_type: String,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Threads (default: the physical cores).
    #[arg(long)]
    pub threads: Option<u32>,
}

pub fn quantize(args: QuantizeArgs) -> anyhow::Result<()> {
    let job = QuantizeJob {
        input: args.input,
        output: args.output,
        file_type: args.file_type,
        force: args.force,
        threads: args.threads,
    };
    let started = std::time::Instant::now();
    let mut stderr = std::io::stderr();
    let mut progressed = false;
    let mut on_tensor = |done: u32, total: u32| {
        progressed = true;
        let _ = write!(stderr, "\rquantizing: tensor {done}/{total}");
        let _ = stderr.flush();
    };
    let result = quantize::quantize(&job, &mut on_tensor);
    if progressed {
        eprintln!();
    }
    result?;
    let size = std::fs::metadata(&job.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({:.1} MiB, {}) in {:.1} s",
        job.output.display(),
        size as f64 / (1024.0 * 1024.0),
        job.file_type.to_uppercase(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
