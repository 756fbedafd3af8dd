//! `hearth pull`, `ls`, `rm` and `import`: the model library from the command line.
//!
//! Thin commands over `hearth-models`: they turn what the user typed into a library call and
//! show progress with an indicatif bar (plain lines when stderr is not a terminal). Models live
//! in `<data dir>/models`. Ctrl-C during a pull pauses it: the partial file stays, is never
//! listed, and pulling the same model again resumes where it stopped.
//!
//! `--model` of `run`, `chat` and `bench` also goes through here ([`resolve_model_path`]): an
//! existing file wins, else an installed model's id names its file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use hearth_models::{
    discover_external_models, sha256_of_file, summarize_gguf, Catalog, DiscoveredModel,
    DiscoveryRoots, DownloadConfig, DownloadControl, DownloadProgress, HubClient, HubRepo,
    ImportMode, ImportOrigin, ImportRequest, InstalledModel, ModelId, ModelLibrary, ModelManifest,
    ModelSource, ModelsError, ProgressUpdate, PullOutcome, PullRequest, Sha256Digest,
};
use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressStyle};
use serde::Serialize;

/// The model `run`, `chat` and `bench` use without `--model`: the catalog's default, which
/// the quickstart installs (a unit test keeps the two in step).
pub const DEFAULT_MODEL_ID: &str = "smollm2-135m-instruct";
/// Picked from a repository with several GGUF files when the user names no quantization: the
/// usual best trade of size and quality.
const PREFERRED_HUB_QUANTIZATION: &str = "Q4_K_M";
/// Exit status after a second Ctrl-C, as shells report a SIGINT death.
const EXIT_STATUS_INTERRUPTED: i32 = 130;
/// Environment variables of the other tools whose models `import --discover` finds.
const OLLAMA_MODELS_ENV: &str = "OLLAMA_MODELS";
const HF_HOME_ENV: &str = "HF_HOME";
const HF_HUB_CACHE_ENV: &str = "HF_HUB_CACHE";

const PROGRESS_BAR_TEMPLATE: &str = "{prefix} [{wide_bar}] {bytes}/{total_bytes} {msg}";
const PROGRESS_SPINNER_TEMPLATE: &str = "{prefix} {spinner} {bytes} {msg}";
const PROGRESS_BAR_CHARACTERS: &str = "=> ";

/// The library folder: `<data dir>/models`.
pub fn models_directory() -> PathBuf {
    crate::data_dir().join("models")
}

fn library() -> ModelLibrary {
    ModelLibrary::new(models_directory())
}

// ---------------------------------------------------------------------------------------------
// hearth pull

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

// ---------------------------------------------------------------------------------------------
// Progress

/// A [`DownloadProgress`] drawn as an indicatif bar on a terminal, and as a few plain lines on
/// stderr otherwise (logs and tests still see what happened).
struct TransferProgressBar {
    bar: ProgressBar,
    /// "downloading", "copying", "checking".
    verb: &'static str,
    /// Whether to print start and end lines when there is no terminal to draw on: worth it for
    /// downloads (minutes, worth a line in a log), noise for a local copy or hash.
    announce_without_terminal: bool,
}

impl TransferProgressBar {
    /// For transfers over the network.
    fn download() -> TransferProgressBar {
        TransferProgressBar {
            bar: ProgressBar::new(0),
            verb: "downloading",
            announce_without_terminal: true,
        }
    }

    /// For work on local files: drawn on a terminal, silent otherwise.
    fn local(verb: &'static str) -> TransferProgressBar {
        TransferProgressBar {
            bar: ProgressBar::new(0),
            verb,
            announce_without_terminal: false,
        }
    }

    fn announces(&self) -> bool {
        self.announce_without_terminal && self.bar.is_hidden()
    }

    /// Prints a line above the bar (or alone when there is no bar).
    fn note(&self, line: String) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

impl DownloadProgress for TransferProgressBar {
    fn started(&self, file_name: &str, total_bytes: Option<u64>, resumed_from_bytes: u64) {
        let template = match total_bytes {
            Some(_) => PROGRESS_BAR_TEMPLATE,
            None => PROGRESS_SPINNER_TEMPLATE,
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars(PROGRESS_BAR_CHARACTERS);
        self.bar.set_style(style);
        self.bar.set_prefix(format!("{} {file_name}", self.verb));
        if let Some(total_bytes) = total_bytes {
            self.bar.set_length(total_bytes);
        }
        self.bar.set_position(resumed_from_bytes);
        if self.announces() {
            let size =
                total_bytes.map_or(String::new(), |total| format!(" ({})", HumanBytes(total)));
            let resuming = if resumed_from_bytes > 0 {
                format!(", resuming at {}", HumanBytes(resumed_from_bytes))
            } else {
                String::new()
            };
            eprintln!("{} {file_name}{size}{resuming}", self.verb);
        }
    }

    fn advanced(&self, update: &ProgressUpdate) {
        self.bar.set_position(update.bytes_done);
        if update.bytes_per_second > 0.0 {
            let rate = HumanBytes(update.bytes_per_second as u64);
            let message = match update.eta {
                Some(eta) => format!("{rate}/s, {} left", HumanDuration(eta)),
                None => format!("{rate}/s"),
            };
            self.bar.set_message(message);
        }
    }

    fn retrying(&self, failed_attempts: u32, delay: Duration, reason: &ModelsError) {
        self.note(format!(
            "attempt {failed_attempts} failed ({reason}); retrying in {}",
            HumanDuration(delay)
        ));
    }

    fn waiting_for_other_download(&self, _lock_path: &Path) {
        self.note("another hearth process is installing this model; waiting for it".to_string());
    }

    fn finished(&self, file_name: &str, size_bytes: u64) {
        self.bar.finish_and_clear();
        if self.announces() {
            eprintln!(
                "{} {file_name}: done ({})",
                self.verb,
                HumanBytes(size_bytes)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// hearth ls

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print one JSON object: every installed model's manifest and file path, and the broken
    /// ones.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct ListingReport<'a> {
    models: Vec<InstalledModelReport<'a>>,
    broken: Vec<BrokenModelReport<'a>>,
}

#[derive(Debug, Serialize)]
struct InstalledModelReport<'a> {
    #[serde(flatten)]
    manifest: &'a ModelManifest,
    model_path: &'a Path,
}

#[derive(Debug, Serialize)]
struct BrokenModelReport<'a> {
    id: &'a str,
    directory: &'a Path,
    reason: &'a str,
}

pub fn ls(args: LsArgs) -> anyhow::Result<()> {
    list_models(args).map_err(without_repeated_causes)
}

fn list_models(args: LsArgs) -> anyhow::Result<()> {
    let library = library();
    let listing = library.list()?;
    if args.json {
        let report = ListingReport {
            models: listing
                .installed
                .iter()
                .map(|installed| InstalledModelReport {
                    manifest: &installed.manifest,
                    model_path: &installed.model_path,
                })
                .collect(),
            broken: listing
                .broken
                .iter()
                .map(|broken| BrokenModelReport {
                    id: &broken.id,
                    directory: &broken.directory,
                    reason: &broken.reason,
                })
                .collect(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }

    if listing.installed.is_empty() && listing.broken.is_empty() {
        eprintln!(
            "no models installed; get one with `hearth pull {DEFAULT_MODEL_ID}` or `hearth import PATH`"
        );
    } else {
        let mut rows = vec![[
            "ID".to_string(),
            "SIZE".to_string(),
            "QUANT".to_string(),
            "PARAMS".to_string(),
            "CONTEXT".to_string(),
            "SOURCE".to_string(),
        ]];
        for installed in &listing.installed {
            let manifest = &installed.manifest;
            let summary = &manifest.summary;
            rows.push([
                manifest.id.to_string(),
                HumanBytes(manifest.size_bytes).to_string(),
                summary
                    .quantization
                    .clone()
                    .unwrap_or_else(|| "-".to_string()),
                summary
                    .parameter_count
                    .map_or("-".to_string(), format_parameter_count),
                summary
                    .context_length
                    .map_or("-".to_string(), |length| length.to_string()),
                describe_source(manifest),
            ]);
        }
        print_table(&rows);
        for broken in &listing.broken {
            println!(
                "{} is broken: {} (remove it with `hearth rm {}`)",
                broken.id, broken.reason, broken.id
            );
        }
    }
    // Unfinished downloads are not models; say how to finish or drop them, on stderr.
    let partials = library.partial_downloads().unwrap_or_default();
    for partial in partials.iter().filter(|partial| partial.bytes_done > 0) {
        eprintln!(
            "note: an unfinished download ({}) is in {}; pull it again to resume, or `hearth rm {}`",
            HumanBytes(partial.bytes_done),
            partial.partial_path.display(),
            partial.id
        );
    }
    Ok(())
}

/// `134.5M`, `7.6B`.
fn format_parameter_count(count: u64) -> String {
    const MILLION: f64 = 1e6;
    const BILLION: f64 = 1e9;
    let count = count as f64;
    if count >= BILLION {
        format!("{:.1}B", count / BILLION)
    } else {
        format!("{:.1}M", count / MILLION)
    }
}

/// Where a model came from, in a few words.
fn describe_source(manifest: &ModelManifest) -> String {
    let origin = match &manifest.source {
        ModelSource::Catalog { quantization, .. } => format!("catalog ({quantization})"),
        ModelSource::Hub { repo, .. } => repo.clone(),
        ModelSource::Import { origin, .. } => match origin {
            ImportOrigin::File => "imported file".to_string(),
            ImportOrigin::Ollama { model_name } => format!("ollama {model_name}"),
            ImportOrigin::LmStudio { model_name } => format!("lm studio {model_name}"),
            ImportOrigin::HuggingFaceCache { repo, .. } => format!("hf cache {repo}"),
        },
    };
    if manifest.in_place {
        format!("{origin}, in place")
    } else {
        origin
    }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn print_table<const COLUMNS: usize>(rows: &[[String; COLUMNS]]) {
    let mut widths = [0usize; COLUMNS];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == COLUMNS {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[column]));
            }
        }
        println!("{}", line.trim_end());
    }
}

// ---------------------------------------------------------------------------------------------
// hearth rm

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The id of an installed model (see `hearth ls`); also drops its unfinished download.
    pub id: String,
}

pub fn rm(args: RmArgs) -> anyhow::Result<()> {
    remove_model(args).map_err(without_repeated_causes)
}

fn remove_model(args: RmArgs) -> anyhow::Result<()> {
    let id = ModelId::new(args.id.as_str())?;
    let library = library();
    let external_file = library
        .get(&id)
        .ok()
        .filter(|installed| installed.manifest.in_place)
        .map(|installed| installed.model_path);
    library.delete(&id)?;
    match external_file {
        Some(path) => println!(
            "removed {id} (its file {} was left in place)",
            path.display()
        ),
        None => println!("removed {id}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// hearth import

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A GGUF file to add to the library.
    #[arg(required_unless_present = "discover", conflicts_with = "discover")]
    pub path: Option<PathBuf>,
    /// Register the file where it lies instead of copying it (it must stay there).
    #[arg(long)]
    pub in_place: bool,
    /// The id to install under (default: made from the file name).
    #[arg(long)]
    pub id: Option<String>,
    /// Accept the file only if its SHA-256 is this (64 hex digits). Importing under a catalog
    /// id whose digest is known checks against the catalog's digest.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Find the models Ollama, LM Studio and the Hugging Face cache already hold (honouring
    /// OLLAMA_MODELS, HF_HUB_CACHE and HF_HOME); with NAME, register that one in place.
    #[arg(long, value_name = "NAME", num_args = 0..=1)]
    pub discover: Option<Option<String>>,
    /// With --discover: register every model found, in place.
    #[arg(long, requires = "discover")]
    pub all: bool,
}

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    import_models(args).map_err(without_repeated_causes)
}

fn import_models(args: ImportArgs) -> anyhow::Result<()> {
    match (&args.discover, &args.path) {
        (Some(name), _) => import_discovered(&args, name.as_deref()),
        (None, Some(path)) => import_file(&args, path),
        (None, None) => bail!("name a GGUF file to import, or use --discover"),
    }
}

fn import_file(args: &ImportArgs, path: &Path) -> anyhow::Result<()> {
    // The header first: a file that is not a GGUF model is refused before anything is hashed.
    summarize_gguf(path)?;
    let model_id = args.id.as_deref().map(ModelId::new).transpose()?;
    let catalog = Catalog::builtin()?;
    let expected = match &args.sha256 {
        Some(hex) => Some((
            Sha256Digest::from_hex(hex.trim())?,
            "the given digest".to_string(),
        )),
        None => model_id
            .as_ref()
            .and_then(|id| catalog_digest_for_id(&catalog, id)),
    };
    let mut request = ImportRequest::file(
        path,
        if args.in_place {
            ImportMode::InPlace
        } else {
            ImportMode::Copy
        },
    );
    // Say at once that the id is taken, before hashing gigabytes for nothing (the library
    // checks again under its lock).
    if let Some(id) = &model_id {
        if let Ok(existing) = library().get(id) {
            bail!(
                "model id {id} is already taken by an installed model ({}); choose another with --id",
                existing.model_path.display()
            );
        }
    }
    request.model_id = model_id;
    if let Some((expected_sha256, what)) = expected {
        let checking = TransferProgressBar::local("checking");
        let actual_sha256 = hash_with_progress(path, &checking)?;
        checking.clear();
        if actual_sha256 != expected_sha256 {
            bail!(
                "{} does not match {what}: its SHA-256 is {}, expected {}",
                path.display(),
                actual_sha256.to_hex(),
                expected_sha256.to_hex()
            );
        }
        // Verified now; an in-place import need not hash the file again, and a copy is
        // checked against it once more.
        request.known_sha256 = Some(expected_sha256);
    }
    let progress = TransferProgressBar::local("copying");
    let result = library().import(&request, &progress);
    progress.clear();
    let installed = result?;
    print_imported(&installed);
    Ok(())
}

/// The digest the catalog vouches for under the id a pull of it would install, if known.
fn catalog_digest_for_id(catalog: &Catalog, id: &ModelId) -> Option<(Sha256Digest, String)> {
    catalog.models.iter().find_map(|model| {
        model.files.iter().find_map(|file| {
            let request =
                PullRequest::from_catalog(catalog, &model.id, Some(&file.quantization)).ok()?;
            if request.model_id != *id {
                return None;
            }
            Some((
                file.sha256_digest()?,
                format!("catalog model {} {}", model.id, file.quantization),
            ))
        })
    })
}

fn hash_with_progress(path: &Path, progress: &TransferProgressBar) -> anyhow::Result<Sha256Digest> {
    let total_bytes = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    progress.started(&file_name, Some(total_bytes), 0);
    let digest = sha256_of_file(path, |bytes_done| {
        progress.advanced(&ProgressUpdate {
            bytes_done,
            total_bytes: Some(total_bytes),
            bytes_per_second: 0.0,
            eta: None,
        })
    })?;
    progress.finished(&file_name, total_bytes);
    Ok(digest)
}

fn print_imported(installed: &InstalledModel) {
    let manifest = &installed.manifest;
    if manifest.in_place {
        println!(
            "registered {} in place ({}, {})",
            manifest.id,
            installed.model_path.display(),
            HumanBytes(manifest.size_bytes)
        );
    } else {
        println!(
            "imported {} ({})",
            manifest.id,
            HumanBytes(manifest.size_bytes)
        );
    }
}

/// Where the other tools keep their models: their defaults under the home folder, unless
/// their own environment variables say otherwise.
fn discovery_roots() -> DiscoveryRoots {
    let home = directories::BaseDirs::new()
        .map(|directories| directories.home_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."));
    let mut roots = DiscoveryRoots::under_home(&home);
    let from_environment = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    if let Some(ollama_models) = from_environment(OLLAMA_MODELS_ENV) {
        roots.ollama_models = vec![ollama_models];
    }
    if let Some(hub_cache) = from_environment(HF_HUB_CACHE_ENV) {
        roots.huggingface_hub = vec![hub_cache];
    } else if let Some(hf_home) = from_environment(HF_HOME_ENV) {
        roots.huggingface_hub = vec![hf_home.join("hub")];
    }
    roots
}

fn tool_name(origin: &ImportOrigin) -> &'static str {
    match origin {
        ImportOrigin::File => "file",
        ImportOrigin::Ollama { .. } => "ollama",
        ImportOrigin::LmStudio { .. } => "lm studio",
        ImportOrigin::HuggingFaceCache { .. } => "hf cache",
    }
}

fn import_discovered(args: &ImportArgs, name: Option<&str>) -> anyhow::Result<()> {
    let report = discover_external_models(&discovery_roots());
    for problem in &report.problems {
        eprintln!("note: {problem}");
    }
    let library = library();
    // Files already in the library, by their real path, so nothing is registered twice.
    let registered: HashMap<PathBuf, String> = library
        .list()?
        .installed
        .into_iter()
        .map(|installed| {
            let real_path =
                std::fs::canonicalize(&installed.model_path).unwrap_or(installed.model_path);
            (real_path, installed.manifest.id.to_string())
        })
        .collect();
    let registered_as = |model: &DiscoveredModel| {
        let real_path = std::fs::canonicalize(&model.path).unwrap_or_else(|_| model.path.clone());
        registered.get(&real_path).cloned()
    };

    if let Some(name) = name {
        let Some(model) = report
            .models
            .iter()
            .find(|model| model.display_name == name || model.suggested_id.as_str() == name)
        else {
            bail!("no model called {name:?} was found; `hearth import --discover` lists them");
        };
        if let Some(id) = registered_as(model) {
            println!("{} is already registered as {id}", model.display_name);
            return Ok(());
        }
        let mut request = ImportRequest::discovered(model);
        if let Some(id) = &args.id {
            request.model_id = Some(ModelId::new(id.as_str())?);
        }
        let progress = TransferProgressBar::local("checking");
        let result = library.import(&request, &progress);
        progress.clear();
        print_imported(&result?);
        return Ok(());
    }

    if report.models.is_empty() {
        eprintln!("no models found in Ollama, LM Studio or the Hugging Face cache");
        return Ok(());
    }
    if !args.all {
        let mut rows = vec![[
            "NAME".to_string(),
            "TOOL".to_string(),
            "SIZE".to_string(),
            "STATUS".to_string(),
        ]];
        for model in &report.models {
            rows.push([
                model.display_name.clone(),
                tool_name(&model.origin).to_string(),
                HumanBytes(model.size_bytes).to_string(),
                match registered_as(model) {
                    Some(id) => format!("registered as {id}"),
                    None => format!("new (would be {})", model.suggested_id),
                },
            ]);
        }
        print_table(&rows);
        eprintln!(
            "register one in place with `hearth import --discover NAME`, all with `hearth import --discover --all`"
        );
        return Ok(());
    }

    let mut failures = 0usize;
    for model in &report.models {
        if registered_as(model).is_some() {
            continue;
        }
        let progress = TransferProgressBar::local("checking");
        let result = library.import(&ImportRequest::discovered(model), &progress);
        progress.clear();
        match result {
            Ok(installed) => print_imported(&installed),
            Err(error) => {
                failures += 1;
                eprintln!("skipped {}: {error}", model.display_name);
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of the models found could not be registered");
    }
    Ok(())
}

/// The error as one message in which no cause is repeated. `hearth-models` errors quote their
/// cause in their own message and also report it as their source, so printing the chain
/// would say the same thing twice.
fn without_repeated_causes(error: anyhow::Error) -> anyhow::Error {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    anyhow::anyhow!(message)
}

// ---------------------------------------------------------------------------------------------
// --model of run, chat and bench

/// The GGUF file `--model` names: the path itself when it exists or plainly is a path (the
/// engine then reports a missing file in its own words), else the installed model with that
/// id.
pub fn resolve_model_path(reference: &Path) -> anyhow::Result<PathBuf> {
    let text = reference.to_string_lossy();
    let looks_like_path =
        text.contains(['/', '\\']) || text.to_ascii_lowercase().ends_with(".gguf");
    if reference.exists() || looks_like_path {
        return Ok(reference.to_path_buf());
    }
    let Ok(id) = ModelId::new(text.as_ref()) else {
        return Ok(reference.to_path_buf());
    };
    let library = library();
    match library.get(&id) {
        Ok(installed) => Ok(installed.model_path),
        Err(ModelsError::ModelNotInstalled { .. }) => {
            let installed: Vec<String> = library
                .list()
                .map(|listing| {
                    listing
                        .installed
                        .into_iter()
                        .map(|model| model.manifest.id.to_string())
                        .collect()
                })
                .unwrap_or_default();
            let installed = if installed.is_empty() {
                "no models are installed".to_string()
            } else {
                format!("installed: {}", installed.join(", "))
            };
            let in_catalog = Catalog::builtin()
                .map(|catalog| catalog.find(id.as_str()).is_some())
                .unwrap_or(false);
            let pull_hint = if in_catalog {
                format!("; get it with `hearth pull {id}`")
            } else {
                String::new()
            };
            bail!(
                "{id} is neither a file nor an installed model ({installed}; see `hearth ls`){pull_hint}"
            )
        }
        Err(error) => Err(error).with_context(|| {
            format!("model {id} cannot be used; `hearth pull` it again or `hearth rm {id}`")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_model_is_the_catalog_default() {
        assert_eq!(Catalog::builtin().unwrap().default_model, DEFAULT_MODEL_ID);
    }

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

    #[test]
    fn catalog_digests_are_found_by_installed_id() {
        let catalog = Catalog::builtin().unwrap();
        let (digest, what) =
            catalog_digest_for_id(&catalog, &ModelId::new(DEFAULT_MODEL_ID).unwrap()).unwrap();
        assert_eq!(
            digest.to_hex(),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        );
        assert!(what.contains(DEFAULT_MODEL_ID), "{what}");
        assert!(
            catalog_digest_for_id(&catalog, &ModelId::new("not-in-catalog").unwrap()).is_none()
        );
    }

    /// An error that quotes its source in its message, as `hearth-models` errors do.
    #[derive(Debug)]
    struct QuotingError(std::io::Error);

    impl std::fmt::Display for QuotingError {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(formatter, "cannot open x: {}", self.0)
        }
    }

    impl std::error::Error for QuotingError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn repeated_causes_are_dropped() {
        let io_error = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let error = anyhow::Error::new(QuotingError(io_error)).context("importing");
        assert_eq!(
            without_repeated_causes(error).to_string(),
            "importing: cannot open x: gone"
        );
        let chained = anyhow::anyhow!("inner").context("outer");
        assert_eq!(without_repeated_causes(chained).to_string(), "outer: inner");
    }

    #[test]
    fn parameter_counts_are_short() {
        assert_eq!(format_parameter_count(134_515_008), "134.5M");
        assert_eq!(format_parameter_count(7_615_616_512), "7.6B");
    }
}
