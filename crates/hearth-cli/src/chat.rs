//! `hearth chat`: an interactive multi-turn chat in the terminal.
//!
//! Ctrl-C while an answer streams stops that answer (the partial answer stays in the history)
//! and returns to the prompt; Ctrl-C at the prompt, Ctrl-D or `/exit` leave.

use std::io::Write;

use clap::Args;
use hearth_protocol::{ChatMessage, ContextOverflow, Prompt, RequestMetrics, Role};
use hearth_supervisor::{Generation, GenerationEvent, Supervisor};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::args::{ModelArgs, SamplingArgs};

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message for the whole conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Print TTFT and tokens/s after each answer.
    #[arg(long)]
    pub metrics: bool,
}

const HELP: &str = "commands: /reset (new conversation), /exit (leave); Ctrl-C stops an answer";

pub async fn chat(args: ChatArgs) -> anyhow::Result<()> {
    let supervisor = crate::supervisor()?;
    let result = chat_with(&supervisor, &args).await;
    supervisor.shutdown().await;
    result
}

async fn chat_with(supervisor: &Supervisor, args: &ChatArgs) -> anyhow::Result<()> {
    let info = crate::run::load(supervisor, &args.model).await?;
    eprintln!(
        "{} ({} parameters, context {}) — {HELP}",
        info.file_name, info.n_params, info.n_ctx
    );
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(system) = &args.system {
        history.push(ChatMessage::new(Role::System, system.clone()));
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = std::io::stdout();
    loop {
        write!(stdout, "> ")?;
        stdout.flush()?;
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(line) = line else {
            writeln!(stdout)?;
            return Ok(());
        };
        let input = line.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                history.retain(|m| m.role == Role::System);
                eprintln!("(new conversation)");
                continue;
            }
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new(Role::User, input.to_string()));
        let mut generation = Generation::new(Prompt::Chat {
            messages: history.clone(),
        });
        generation.sampling = args.sampling.sampling_params();
        generation.max_tokens = args.sampling.max_tokens;
        generation.stop = args.sampling.stop.clone();
        // A long chat keeps going: the oldest turns leave the prompt (never the system message),
        // and the user is told.
        generation.context_overflow = ContextOverflow::DropOldestTurns;
        let answer =
            answer_until_interrupted(supervisor, generation, &mut stdout, args.metrics).await;
        match answer {
            Ok((text, metrics)) => {
                if let Some(metrics) = &metrics {
                    crate::run::record_draft_acceptance(
                        &info,
                        args.model.max_draft_tokens,
                        metrics,
                    );
                }
                history.push(ChatMessage::new(Role::Assistant, text));
            }
            Err(error) => {
                // The turn failed (for example the model crashed); drop it and go on.
                history.pop();
                eprintln!("\nerror: {error:#}");
            }
        }
    }
}

async fn answer_until_interrupted(
    supervisor: &Supervisor,
    generation: Generation,
    stdout: &mut std::io::Stdout,
    show_metrics: bool,
) -> anyhow::Result<(String, Option<RequestMetrics>)> {
    let mut stream = supervisor.generate(generation).await?;
    let mut text = String::new();
    let mut figures = None;
    let mut cancelled = false;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = tokio::signal::ctrl_c(), if !cancelled => {
                cancelled = true;
                stream.cancel().await;
                continue;
            }
        };
        let Some(event) = event else { break };
        match event? {
            GenerationEvent::Started {
                dropped_messages, ..
            } => {
                if dropped_messages > 0 {
                    eprintln!("({dropped_messages} oldest messages no longer fit the context and were left out)");
                }
            }
            GenerationEvent::Text { text: piece, .. } => {
                write!(stdout, "{piece}")?;
                stdout.flush()?;
                text.push_str(&piece);
            }
            GenerationEvent::Done {
                finish_reason,
                metrics,
                ..
            } => {
                writeln!(stdout)?;
                if cancelled {
                    eprintln!("(stopped)");
                }
                if show_metrics {
                    eprintln!(
                        "[{} tokens, {:?}, TTFT {:.0} ms, {:.1} tokens/s]",
                        metrics.generated_tokens,
                        finish_reason,
                        metrics.ttft_ms,
                        metrics.decode_tokens_per_s
                    );
                }
                figures = Some(metrics);
                break;
            }
        }
    }
    Ok((text, figures))
}
