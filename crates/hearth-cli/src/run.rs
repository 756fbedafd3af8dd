//! `hearth run`: one prompt, one answer.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use hearth_protocol::{ChatMessage, FinishReason, ModelInfo, Prompt, RequestMetrics, Role};
use hearth_supervisor::{Generation, GenerationEvent, Supervisor};
use serde::Serialize;

use crate::args::{ModelArgs, SamplingArgs};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message put before the prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Send the prompt as raw text, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Print one JSON object with the answer and all metrics instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// The prompt.
    pub prompt: String,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct RunReport {
    text: String,
    finish_reason: FinishReason,
    model: ModelInfo,
    metrics: RequestMetrics,
}

/// Loads the model, reporting a ChatML fallback (never silent).
pub async fn load(supervisor: &Supervisor, args: &ModelArgs) -> anyhow::Result<ModelInfo> {
    let model_path = args.model_path()?;
    let info = supervisor
        .load(&model_path, args.load_params())
        .await
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    if info.template_source == hearth_protocol::TemplateSource::FallbackChatml {
        eprintln!(
            "note: {} has no chat template; using ChatML",
            info.file_name
        );
    }
    // The catalog's draft left out by the planner: said once, with the figure.
    if let Some(verdict) = info
        .draft_verdict
        .as_ref()
        .filter(|verdict| !verdict.advised)
    {
        eprintln!("note: {}", verdict.summary());
    }
    Ok(info)
}

/// Adds a finished answer's guesses to the acceptance measured for the model and its draft
/// model ([`hearth_server::draft_acceptance`]), when it speculated with one.
pub fn record_draft_acceptance(info: &ModelInfo, max_draft_tokens: u32, metrics: &RequestMetrics) {
    if info.speculative != hearth_protocol::SpeculativeMode::Draft {
        return;
    }
    if let Some(draft) = &info.draft_model {
        hearth_server::draft_acceptance::record_answer(
            &hearth_supervisor::process::data_dir(),
            &info.file_name,
            draft,
            max_draft_tokens,
            metrics,
        );
    }
}

/// Streams one generation, writing text to `out` as it arrives.
pub async fn stream_answer(
    supervisor: &Supervisor,
    generation: Generation,
    out: &mut dyn Write,
) -> anyhow::Result<(String, FinishReason, RequestMetrics)> {
    let mut stream = supervisor.generate(generation).await?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            GenerationEvent::Started { .. } => {}
            GenerationEvent::Text { text: piece, .. } => {
                out.write_all(piece.as_bytes())?;
                out.flush()?;
                text.push_str(&piece);
            }
            GenerationEvent::Done {
                finish_reason,
                metrics,
                ..
            } => return Ok((text, finish_reason, metrics)),
        }
    }
    anyhow::bail!("the generation ended without a result")
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let supervisor = crate::supervisor()?;
    let result = run_with(&supervisor, &args).await;
    supervisor.shutdown().await;
    result
}

async fn run_with(supervisor: &Supervisor, args: &RunArgs) -> anyhow::Result<()> {
    let model = load(supervisor, &args.model).await?;
    let prompt = if args.raw {
        Prompt::Text {
            text: args.prompt.clone(),
        }
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new(Role::System, system.clone()));
        }
        messages.push(ChatMessage::new(Role::User, args.prompt.clone()));
        Prompt::Chat { messages }
    };
    let mut generation = Generation::new(prompt);
    generation.sampling = args.sampling.sampling_params();
    generation.max_tokens = args.sampling.max_tokens;
    generation.stop = args.sampling.stop.clone();
    if args.json {
        let (text, finish_reason, metrics) =
            stream_answer(supervisor, generation, &mut std::io::sink()).await?;
        record_draft_acceptance(&model, args.model.max_draft_tokens, &metrics);
        let report = RunReport {
            text,
            finish_reason,
            model,
            metrics,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut stdout = std::io::stdout();
        let (_, _, metrics) = stream_answer(supervisor, generation, &mut stdout).await?;
        writeln!(stdout)?;
        record_draft_acceptance(&model, args.model.max_draft_tokens, &metrics);
    }
    Ok(())
}
