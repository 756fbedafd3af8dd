//! `hearth provider add|ls|rm`: remote OpenAI-compatible servers (vLLM, llama.cpp's server,
//! TGI, another Hearth) whose models Hearth serves beside its own as `NAME/MODEL`. The same
//! files as the UI's provider settings (hearth-server's `ProviderStore`, in the data folder);
//! a running server sees a change at its next request.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Subcommand;
use hearth_server::{ProviderRegistry, ProviderStore, RemoteTimeouts};

#[derive(Debug, clap::Args)]
pub struct ProviderArgs {
    #[command(subcommand)]
    command: ProviderCommand,
}

#[derive(Debug, Subcommand)]
enum ProviderCommand {
    /// Add a provider: its models appear as NAME/MODEL in every model list.
    Add {
        /// Lowercase letters, digits, '-' and '_', starting with a letter.
        name: String,
        /// Its OpenAI-compatible base URL (`http://gpu-box:8000/v1`; `/v1` is added to a URL
        /// without a path).
        url: String,
        /// Read its API key from this environment variable. Never given on the command line,
        /// where every user of the machine can read it; kept in a private file (0600).
        #[arg(long, value_name = "VAR")]
        api_key_env: Option<String>,
    },
    /// List the providers, whether each answers, and its models.
    Ls,
    /// Remove a provider and its key.
    Rm { name: String },
}

fn registry() -> Arc<ProviderRegistry> {
    ProviderRegistry::new(
        &hearth_supervisor::process::data_dir(),
        RemoteTimeouts::default(),
    )
}

pub async fn provider(args: ProviderArgs) -> anyhow::Result<()> {
    match args.command {
        ProviderCommand::Add {
            name,
            url,
            api_key_env,
        } => add(&name, &url, api_key_env.as_deref()).await,
        ProviderCommand::Ls => ls().await,
        ProviderCommand::Rm { name } => {
            ProviderStore::new(&hearth_supervisor::process::data_dir())
                .remove(&name)
                .context("cannot remove the provider")?;
            println!("Removed the provider `{name}` and its key.");
            Ok(())
        }
    }
}

async fn add(name: &str, url: &str, api_key_env: Option<&str>) -> anyhow::Result<()> {
    let key = match api_key_env {
        None => None,
        Some(variable) => match std::env::var(variable) {
            Ok(key) if !key.is_empty() => Some(key),
            _ => {
                bail!("the environment variable {variable} is not set (it should hold the API key)")
            }
        },
    };
    let registry = registry();
    let config = registry
        .store()
        .add(name, url, key.as_deref())
        .context("cannot add the provider")?;
    println!(
        "Added the provider `{}` at {}{}.",
        config.name,
        config.base_url,
        if key.is_some() { " with its key" } else { "" }
    );
    let status = registry
        .statuses()
        .await
        .into_iter()
        .find(|status| status.config.name == config.name);
    match status.map(|status| status.models) {
        Some(Ok(models)) => println!(
            "It answers and lists {} model{}: {}",
            models.len(),
            if models.len() == 1 { "" } else { "s" },
            models
                .iter()
                .map(|model| model.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Err(error)) => {
            eprintln!("warning: it does not answer now ({error}); it stays added.")
        }
        None => {}
    }
    Ok(())
}

async fn ls() -> anyhow::Result<()> {
    let statuses = registry().statuses().await;
    if statuses.is_empty() {
        println!("No providers. Add one with `hearth provider add NAME URL [--api-key-env VAR]`.");
        return Ok(());
    }
    let mut rows = vec![[
        "NAME".to_string(),
        "URL".to_string(),
        "KEY".to_string(),
        "STATUS".to_string(),
        "MODELS".to_string(),
    ]];
    for status in statuses {
        let (state, models) = match status.models {
            Ok(models) => (
                "ok".to_string(),
                models
                    .iter()
                    .map(|model| model.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Err(error) => (format!("unreachable: {error}"), String::new()),
        };
        rows.push([
            status.config.name,
            status.config.base_url,
            match &status.key_storage {
                Some(storage) => format!("yes ({storage})"),
                None => "no".to_string(),
            },
            state,
            models,
        ]);
    }
    crate::models::print_table(&rows);
    Ok(())
}
