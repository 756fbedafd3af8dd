//! `hearth pull`: a catalog model or a Hugging Face repository's GGUF file into the library,
//! on a thread of its own so that Ctrl-C can pause it.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use hearth_models::{
    Catalog, DownloadConfig, DownloadControl, HubClient, HubRepo, ModelId, PullOutcome, PullRequest,
};
use indicatif::HumanBytes;

use super::progress::TransferProgressBar;
use super::{library, without_repeated_causes};

/// Picked from a repository with several GGUF files when the user names no quantization: the
/// usual best trade of size and quality.
const PREFERRED_HUB_QUANTIZATION: &str = "Q4_K_M";
/// Exit status after a second Ctrl-C, as shells report a SIGINT death.
const EXIT_STATUS_INTERRUPTED: i32 = 130;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// What to download: a catalog id (`qwen3-4b`, `qwen3-4b:Q8_0`) or a Hugging Face
    /// repository (`owner/name`, `owner/name:Q4_K_M`, `owner/name:path/file.gguf`).
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Install under this id instead of the default one.
    #[arg(long)]
    pub id: Option<String>,
    /// Branch, tag or commit of a repository (default: main).
    #[arg(long)]
    pub revision: Option<String>,
    /// Seconds to wait for a connection before an attempt fails (default 20).
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
    /// Failed attempts in a row before giving up; the wait between them doubles (default 8).
    #[arg(long)]
    pub max_attempts: Option<u32>,
}

/// What `hearth pull` was asked for, before anything is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PullTarget {
    Catalog {
        id: String,
        quantization: Option<String>,
    },
    Hub {
        repo: String,
        selector: Option<HubFileSelector>,
    },
}

/// Which file of a hub repository.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HubFileSelector {
    Quantization(String),
    File(String),
}

/// `owner/name[:QUANT|:FILE.gguf]` is a repository; anything else is a catalog id with an
/// optional `:QUANT`.
fn parse_pull_target(text: &str) -> anyhow::Result<PullTarget> {
    let text = text.trim();
    let (name, selector) = match text.split_once(':') {
        Some((name, selector)) => (name, Some(selector.trim())),
        None => (text, None),
    };
    if name.is_empty() || selector.is_some_and(str::is_empty) {
        bail!(
            "{text:?} names no model: use a catalog id (see docs/catalog.md) or owner/name[:QUANT]"
        );
    }
    if name.contains('/') {
        let selector = selector.map(|selector| {
            if selector.to_ascii_lowercase().ends_with(".gguf") {
                HubFileSelector::File(selector.to_string())
            } else {
                HubFileSelector::Quantization(selector.to_string())
            }
        });
        return Ok(PullTarget::Hub {
            repo: name.to_string(),
            selector,
        });
    }
    Ok(PullTarget::Catalog {
        id: name.to_ascii_lowercase(),
        quantization: selector.map(str::to_string),
    })
}

/// Whether `file_name` is the `quantization` variant: the quantization appears as a whole
/// token (`Q4_K` matches `model-q4_k.gguf`, not `model-q4_k_m.gguf`).
fn file_matches_quantization(file_name: &str, quantization: &str) -> bool {
    let name = file_name.to_ascii_lowercase();
    let wanted = quantization.to_ascii_lowercase();
    let is_token_character =
        |character: char| character.is_ascii_alphanumeric() || character == '_';
    name.match_indices(&wanted).any(|(start, _)| {
        let before = name[..start].chars().next_back();
        let after = name[start + wanted.len()..].chars().next();
        !before.is_some_and(is_token_character) && !after.is_some_and(is_token_character)
    })
}

/// A GGUF file that is a model by itself: not a vision projector, not part of a split model.
fn is_standalone_model_file(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file).to_ascii_lowercase();
    name.ends_with(".gguf") && !name.starts_with("mmproj") && !name.contains("-of-0")
}

/// Turns a target into a pull request, asking the hub for a repository's files when the
/// target does not say which one.
fn pull_request_for(
    hub: &HubClient,
    catalog: &Catalog,
    target: &PullTarget,
    revision: Option<&str>,
) -> anyhow::Result<PullRequest> {
    let (repo_text, selector) = match target {
        PullTarget::Catalog { id, quantization } => {
            return Ok(PullRequest::from_catalog(
                catalog,
                id,
                quantization.as_deref(),
            )?)
        }
        PullTarget::Hub { repo, selector } => (repo, selector),
    };
    let repo = HubRepo::parse(repo_text)?;
    // A repository the catalog knows at its catalog revision: use the entry, with its
    // verified figures and its id.
    if revision.is_none() {
        if let Some(model) = catalog
            .models
            .iter()
            .find(|model| model.repo.eq_ignore_ascii_case(repo_text))
        {
            let quantization = match selector {
                None => None,
                Some(HubFileSelector::Quantization(quantization)) => model
                    .files
                    .iter()
                    .find(|file| file.quantization.eq_ignore_ascii_case(quantization))
                    .map(|file| file.quantization.clone()),
                Some(HubFileSelector::File(wanted)) => model
                    .files
                    .iter()
                    .find(|file| file.file == *wanted)
                    .map(|file| file.quantization.clone()),
            };
            if selector.is_none() || quantization.is_some() {
                return Ok(PullRequest::from_catalog(
                    catalog,
                    &model.id,
                    quantization.as_deref(),
                )?);
            }
        }
    }
    let file = match selector {
        Some(HubFileSelector::File(file)) => file.clone(),
        Some(HubFileSelector::Quantization(quantization)) => {
            choose_hub_file(hub, &repo, revision, Some(quantization))?
        }
        None => choose_hub_file(hub, &repo, revision, None)?,
    };
    Ok(PullRequest::from_hub(repo, revision, &file, None)?)
}

/// The file of `repo` for `quantization`, or its only (or preferred) model file.
fn choose_hub_file(
    hub: &HubClient,
    repo: &HubRepo,
    revision: Option<&str>,
    quantization: Option<&str>,
) -> anyhow::Result<String> {
    let revision = revision.unwrap_or(hearth_models::DEFAULT_REVISION);
    let files: Vec<String> = hub
        .list_gguf_files(repo, revision)
        .with_context(|| format!("cannot list the files of {repo}"))?
        .into_iter()
        .map(|info| info.file)
        .filter(|file| is_standalone_model_file(file))
        .collect();
    if files.is_empty() {
        bail!("{repo} has no single-file GGUF model");
    }
    let matching: Vec<&String> = match quantization {
        Some(quantization) => files
            .iter()
            .filter(|file| file_matches_quantization(file, quantization))
            .collect(),
        None if files.len() == 1 => files.iter().collect(),
        None => files
            .iter()
            .filter(|file| file_matches_quantization(file, PREFERRED_HUB_QUANTIZATION))
            .collect(),
    };
    match matching.as_slice() {
        [file] => Ok((*file).clone()),
        [] => bail!(
            "{repo} has no {} file; name one with {repo}:QUANT or {repo}:FILE (files: {})",
            quantization.unwrap_or("single"),
            files.join(", ")
        ),
        several => bail!(
            "{repo} has several matching files; name one with {repo}:FILE (matching: {})",
            several
                .iter()
                .map(|file| file.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub async fn pull(args: PullArgs) -> anyhow::Result<()> {
    pull_until_done(args).await.map_err(without_repeated_causes)
}

async fn pull_until_done(args: PullArgs) -> anyhow::Result<()> {
    let control = DownloadControl::new();
    let worker_control = control.clone();
    let mut download = tokio::task::spawn_blocking(move || pull_blocking(&args, &worker_control));
    let mut pausing = false;
    loop {
        tokio::select! {
            finished = &mut download => return finished.context("the download thread failed")?,
            _ = tokio::signal::ctrl_c() => {
                if pausing {
                    // The partial file is already on disk and the lock dies with the process,
                    // so the next pull resumes from here too.
                    eprintln!("\nstopped; `hearth pull` again resumes the download");
                    std::process::exit(EXIT_STATUS_INTERRUPTED);
                }
                pausing = true;
                control.pause();
                eprintln!("\npausing (Ctrl-C again quits at once)...");
            }
        }
    }
}

fn pull_blocking(args: &PullArgs, control: &DownloadControl) -> anyhow::Result<()> {
    let mut config = DownloadConfig::default();
    if let Some(seconds) = args.connect_timeout {
        config.connect_timeout = Duration::from_secs(seconds.max(1));
    }
    if let Some(attempts) = args.max_attempts {
        config.max_attempts = attempts.max(1);
    }
    let hub = HubClient::from_environment(config)?;
    let catalog = Catalog::builtin()?;
    let target = parse_pull_target(&args.model)?;
    let mut request = pull_request_for(&hub, &catalog, &target, args.revision.as_deref())?;
    if let Some(id) = &args.id {
        request.model_id = ModelId::new(id.as_str())?;
    }
    let progress = TransferProgressBar::download();
    let outcome = library().pull(&hub, &request, control, &progress);
    progress.clear();
    match outcome? {
        PullOutcome::Installed(installed) => {
            println!(
                "installed {} ({}); chat with: hearth chat --model {}",
                installed.manifest.id,
                HumanBytes(installed.manifest.size_bytes),
                installed.manifest.id
            );
        }
        PullOutcome::AlreadyInstalled(installed) => {
            println!("{} is already installed", installed.manifest.id);
        }
        PullOutcome::Paused {
            bytes_done,
            total_bytes,
        } => {
            let total = total_bytes.map_or("?".to_string(), |total| HumanBytes(total).to_string());
            bail!(
                "download paused at {} of {total}; run `hearth pull {}` again to resume",
                HumanBytes(bytes_done),
                args.model
            );
        }
        PullOutcome::Cancelled => bail!("download cancelled"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_targets_are_parsed() {
        assert_eq!(
            parse_pull_target("qwen3-4b").unwrap(),
            PullTarget::Catalog {
                id: "qwen3-4b".to_string(),
                quantization: None
            }
        );
        assert_eq!(
            parse_pull_target("Qwen3-4B:Q8_0").unwrap(),
            PullTarget::Catalog {
                id: "qwen3-4b".to_string(),
                quantization: Some("Q8_0".to_string())
            }
        );
        assert_eq!(
            parse_pull_target("owner/name").unwrap(),
            PullTarget::Hub {
                repo: "owner/name".to_string(),
                selector: None
            }
        );
        assert_eq!(
            parse_pull_target("owner/name:q4_k_m").unwrap(),
            PullTarget::Hub {
                repo: "owner/name".to_string(),
                selector: Some(HubFileSelector::Quantization("q4_k_m".to_string()))
            }
        );
        assert_eq!(
            parse_pull_target("owner/name:sub/Model.Q4_1.GGUF").unwrap(),
            PullTarget::Hub {
                repo: "owner/name".to_string(),
                selector: Some(HubFileSelector::File("sub/Model.Q4_1.GGUF".to_string()))
            }
        );
        assert!(parse_pull_target("").is_err());
        assert!(parse_pull_target("owner/name:").is_err());
        assert!(parse_pull_target(":Q4_0").is_err());
    }

    #[test]
    fn quantizations_match_whole_tokens() {
        assert!(file_matches_quantization("model-Q4_K_M.gguf", "q4_k_m"));
        assert!(file_matches_quantization("model.q4_k.gguf", "Q4_K"));
        assert!(!file_matches_quantization("model-q4_k_m.gguf", "Q4_K"));
        assert!(!file_matches_quantization("model-iq4_xs.gguf", "Q4_XS"));
        assert!(file_matches_quantization("Q8_0.gguf", "Q8_0"));
    }

    #[test]
    fn projectors_and_split_parts_are_not_standalone_models() {
        assert!(is_standalone_model_file("dir/model-Q4_K_M.gguf"));
        assert!(!is_standalone_model_file("mmproj-model-f16.gguf"));
        assert!(!is_standalone_model_file("model-00001-of-00003.gguf"));
        assert!(!is_standalone_model_file("README.md"));
    }
}
