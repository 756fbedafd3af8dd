//! `hearth ls` and `hearth rm`.

use std::path::Path;

use clap::Args;
use hearth_models::{ImportOrigin, ModelId, ModelManifest, ModelSource};
use indicatif::HumanBytes;
use serde::Serialize;

use super::{library, print_table, without_repeated_causes, DEFAULT_MODEL_ID};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_are_short() {
        assert_eq!(format_parameter_count(134_515_008), "134.5M");
        assert_eq!(format_parameter_count(7_615_616_512), "7.6B");
    }
}
