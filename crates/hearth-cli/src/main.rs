//! `hearth`: a private, offline LLM chat on your own machine.
//!
//! The binary is a thin front door: every command parses its options, starts the engine
//! worker through `hearth-supervisor` (the hidden `engine` subcommand of this same binary), and
//! prints what comes back. Errors print one line and exit non-zero; nothing here panics on bad
//! input.

mod args;
mod bench;
mod bench_modes;
mod bench_neighbour;
mod bench_speculative;
mod chat;
mod fit_draft;
mod models;
mod probe;
mod provider;
mod quantize;
mod run;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hearth_supervisor::process::{self, Role, ENGINE_SUBCOMMAND, PROBE_REPORT_SUBCOMMAND};
use hearth_supervisor::{Supervisor, WorkerCommand};

#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    // One line: version, commit and llama.cpp (hearth-build-info, shared with GET /api/about).
    version = hearth_build_info::LONG_VERSION,
    about = "Private, offline LLM chat on your own machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Which llama.cpp backend runs models: `auto` loads every backend that can load and uses
    /// each GPU once (CUDA, then Metal, then Vulkan), `cpu` never touches a GPU, and `vulkan`,
    /// `cuda` or `metal` force one (an error if it cannot be used). Also HEARTH_BACKEND.
    #[arg(long, global = true, value_enum, env = hearth_protocol::BACKEND_ENV)]
    backend: Option<args::BackendArg>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answer one prompt and print the answer (streamed) or, with --json, the answer and metrics.
    Run(run::RunArgs),
    /// Chat with a model in the terminal (Ctrl-C stops the current answer).
    Chat(chat::ChatArgs),
    /// Measure prefill and decode speed, TTFT, TPOT and inter-token latency.
    Bench(bench::BenchArgs),
    /// Download a model from the catalog or a Hugging Face repository (resumable; Ctrl-C pauses).
    Pull(models::PullArgs),
    /// List the installed models.
    Ls(models::LsArgs),
    /// Remove an installed model (an in-place model's file is left alone).
    Rm(models::RmArgs),
    /// Remote OpenAI-compatible servers whose models are served beside the local ones
    /// (add, ls, rm).
    Provider(provider::ProviderArgs),
    /// Add a local GGUF file, or models that Ollama, LM Studio or the Hugging Face cache hold.
    Import(models::ImportArgs),
    /// Report this machine: CPU, memory, GPUs, llama.cpp's devices and measured bandwidths.
    Probe(probe::ProbeArgs),
    /// Plan a model for this machine (quantization, context, GPU layers, memory, speed);
    /// --verify loads it and compares with what llama.cpp allocates.
    Fit(probe::FitArgs),
    /// Serve the local OpenAI-compatible API (chat, completions, models, health, metrics).
    Serve(serve::ServeArgs),
    /// Write a GGUF model in another type with llama.cpp's quantizer (e.g. Q4_K_M, or F16).
    Quantize(quantize::QuantizeArgs),
    /// The engine worker process (internal: speaks the worker protocol on stdin/stdout).
    #[command(hide = true, name = ENGINE_SUBCOMMAND)]
    Engine,
    /// The server's probe process (internal: probes the machine with DATA_DIR's cache,
    /// prints the report as one JSON line and exits).
    #[command(hide = true, name = PROBE_REPORT_SUBCOMMAND)]
    ProbeReport { data_dir: PathBuf },
}

impl Command {
    /// What this command makes the process.
    fn role(&self) -> Role {
        match self {
            Command::Engine => Role::Engine,
            Command::ProbeReport { .. } => Role::ProbeReport,
            // `serve`'s probe processes inherit its environment.
            Command::Probe(_) | Command::Fit(_) | Command::Serve(_) => {
                Role::FrontEnd { probes: true }
            }
            _ => Role::FrontEnd { probes: false },
        }
    }
}

/// A supervisor whose worker is this same binary's `engine` subcommand.
pub fn supervisor() -> anyhow::Result<Supervisor> {
    Ok(Supervisor::new(engine_command()?))
}

/// This same binary's `engine` subcommand.
pub fn engine_command() -> anyhow::Result<WorkerCommand> {
    let exe =
        std::env::current_exe().context("cannot find the hearth binary to start the engine")?;
    Ok(WorkerCommand::engine(exe))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(backend) = cli.backend {
        // Every engine worker this process starts inherits the choice (see
        // hearth_engine::backends). Set before any thread exists.
        std::env::set_var(
            hearth_protocol::BACKEND_ENV,
            hearth_protocol::BackendChoice::from(backend).as_str(),
        );
    }
    let process = process::setup(cli.command.role());
    let _log_guard = hearth_engine::logging::init(&process.data_dir, process.role.is_worker());
    let result = match cli.command {
        Command::Engine => hearth_engine::worker::run_worker().context("engine worker failed"),
        Command::ProbeReport { data_dir } => engine_command().and_then(|engine| {
            with_runtime(async move {
                hearth_probe::machine::print_probe_report(data_dir, engine)
                    .await
                    .context("the probe failed")
            })
        }),
        Command::Run(args) => with_runtime(run::run(args)),
        Command::Serve(args) => with_runtime(serve::serve(args)),
        Command::Chat(args) => with_runtime(chat::chat(args)),
        Command::Bench(args) => with_runtime(bench::bench(args)),
        Command::Pull(args) => with_runtime(models::pull(args)),
        Command::Ls(args) => models::ls(args),
        Command::Rm(args) => models::rm(args),
        Command::Provider(args) => with_runtime(provider::provider(args)),
        Command::Import(args) => models::import(args),
        Command::Probe(args) => with_runtime(probe::probe(args)),
        Command::Fit(args) => with_runtime(probe::fit(args)),
        Command::Quantize(args) => quantize::quantize(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line.
fn one_line(error: &anyhow::Error) -> String {
    error
        .chain()
        .map(|cause| cause.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn with_runtime(
    future: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}
