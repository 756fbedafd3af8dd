//! `hearth pull`, `ls`, `rm` and `import`: the model library from the command line.
//!
//! Thin commands over `hearth-models`: they turn what the user typed into a library call and
//! show progress with an indicatif bar (plain lines when stderr is not a terminal). Models live
//! in `<data dir>/models`. Ctrl-C during a pull pauses it: the partial file stays, is never
//! listed, and pulling the same model again resumes where it stopped.
//!
//! `--model` of `run`, `chat` and `bench` also goes through here ([`resolve_model_path`]): an
//! existing file wins, else an installed model's id names its file.

mod import;
mod list;
mod progress;
mod pull;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hearth_models::{Catalog, ModelId, ModelLibrary, ModelsError};

pub use import::{import, ImportArgs};
pub use list::{ls, rm, LsArgs, RmArgs};
pub use pull::{pull, PullArgs};

/// The model `run`, `chat` and `bench` use without `--model`: the catalog's default, which
/// the quickstart installs (a unit test keeps the two in step).
pub const DEFAULT_MODEL_ID: &str = "smollm2-135m-instruct";

/// The library folder: `<data dir>/models`.
pub fn models_directory() -> PathBuf {
    let data_dir = hearth_supervisor::process::data_dir();
    hearth_supervisor::process::models_dir(&data_dir)
}

fn library() -> ModelLibrary {
    ModelLibrary::new(models_directory())
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub(crate) fn print_table<const COLUMNS: usize>(rows: &[[String; COLUMNS]]) {
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

/// The draft model the catalog names for `reference` (an installed model pulled from the
/// catalog, or a catalog id).
pub fn catalog_draft(reference: &str) -> Option<hearth_models::DraftChoice> {
    let catalog = Catalog::builtin().ok()?;
    hearth_models::catalog_draft(&catalog, &library(), reference)
}

/// The installed draft model the catalog names for the installed model `reference`
/// (speculative decoding); `None` for a file path, or when there is none.
pub fn catalog_draft_path(reference: &Path) -> Option<PathBuf> {
    let reference = reference.to_str()?;
    if reference.contains(['/', '\\']) || Path::new(reference).exists() {
        return None;
    }
    catalog_draft(reference)?.installed_path
}

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
}
