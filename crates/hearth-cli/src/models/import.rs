//! `hearth import`: a GGUF file copied in or registered in place, and the models that Ollama,
//! LM Studio and the Hugging Face cache already hold, registered without copying a byte.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use hearth_models::{
    discover_external_models, summarize_gguf, Catalog, DiscoveredModel, DiscoveryRoots, ImportMode,
    ImportOrigin, ImportRequest, InstalledModel, ModelId, PullRequest, Sha256Digest,
};
use indicatif::HumanBytes;

use super::progress::TransferProgressBar;
use super::{library, print_table, without_repeated_causes};

/// Environment variables of the other tools whose models `import --discover` finds.
const OLLAMA_MODELS_ENV: &str = "OLLAMA_MODELS";
const HF_HOME_ENV: &str = "HF_HOME";
const HF_HUB_CACHE_ENV: &str = "HF_HUB_CACHE";

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
        let total_bytes = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let actual_sha256 = hearth_models::hash_with_progress(path, total_bytes, &checking)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::DEFAULT_MODEL_ID;

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
}
