//! The curated model catalog (`models/catalog.toml`, format in `docs/catalog.md`).
//!
//! The catalog names models and the GGUF files to fetch for each quantization. It is compiled
//! into the binary so that `hearth pull <id>` works on a fresh install; sizes and digests are
//! only written where they were verified offline, and otherwise come from the hub at pull time.

use std::collections::HashSet;

use serde::Deserialize;

use crate::digest::{is_sha256_hex, Sha256Digest};
use crate::error::{ModelsError, Result};
use crate::hub::{validate_repo_file_path, validate_revision, HubRepo};
use crate::id::ModelId;

/// The catalog shipped with Hearth.
pub const BUILTIN_CATALOG_TOML: &str = include_str!("../../../models/catalog.toml");

/// The only catalog format this build reads.
pub const CATALOG_SCHEMA_VERSION: u32 = 1;

/// Revision used when an entry names none.
pub const DEFAULT_REVISION: &str = "main";

/// Quantization names the catalog may use: llama.cpp's file types, as they appear in GGUF
/// file names. A typo here would otherwise only surface as a 404 at pull time.
pub const KNOWN_QUANTIZATIONS: &[&str] = &[
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_1",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_1",
    "Q4_0",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K_S",
    "Q2_K",
    "Q2_K_S",
    "IQ4_XS",
    "IQ4_NL",
    "IQ3_M",
    "IQ3_S",
    "IQ3_XS",
    "IQ3_XXS",
    "IQ2_M",
    "IQ2_S",
    "IQ2_XS",
    "IQ2_XXS",
    "IQ1_M",
    "IQ1_S",
    "TQ1_0",
    "TQ2_0",
    "MXFP4_MOE",
];

/// Whether `name` is one of [`KNOWN_QUANTIZATIONS`] (case-insensitive).
pub fn is_known_quantization(name: &str) -> bool {
    KNOWN_QUANTIZATIONS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(name))
}

/// The whole catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub schema_version: u32,
    /// The model first-run setup offers when the planner has nothing better.
    pub default_model: String,
    pub models: Vec<CatalogModel>,
}

/// One model: a repository and its GGUF files, one per quantization.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    /// Lowercase [`ModelId`]; also the default installed id.
    pub id: String,
    pub display_name: String,
    /// Model family, such as `Qwen3` or `Llama 3.2`, for grouping in the UI.
    pub family: String,
    /// Hugging Face repository holding the GGUF files, `owner/name`.
    pub repo: String,
    /// Branch, tag or commit; `main` when absent.
    pub revision: Option<String>,
    /// SPDX identifier or the license's short name (`llama3.2`, `gemma`).
    pub license: String,
    /// Parameter count in billions, as published by the model's authors (approximate).
    pub parameters_billions: f64,
    /// Context length the model was trained for, from its model card.
    pub context_length: Option<u64>,
    /// One line on what the model is good for.
    pub purpose: String,
    /// The quantization pulled when the user names none.
    pub default_quantization: String,
    /// A smaller catalog model of the same family (same vocabulary) that guesses tokens for
    /// this one (speculative decoding), used when it is installed.
    #[serde(default)]
    pub draft_model: Option<String>,
    /// An embedding model (`/v1/embeddings`, Ollama's `/api/embed`), not a chat model: never
    /// recommended for chat.
    #[serde(default)]
    pub embedding: bool,
    pub files: Vec<CatalogFile>,
}

/// One GGUF file of a catalog model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    pub quantization: String,
    /// Path of the file inside the repository.
    pub file: String,
    /// Exact size in bytes, only when verified.
    pub size_bytes: Option<u64>,
    /// SHA-256 as 64 hex digits, only when verified.
    pub sha256: Option<String>,
}

impl Catalog {
    /// Parses and validates a catalog; `origin` names it in errors (a path or "built-in").
    pub fn parse(toml_text: &str, origin: &str) -> Result<Catalog> {
        let catalog: Catalog =
            toml::from_str(toml_text).map_err(|error| ModelsError::CatalogParse {
                origin: origin.to_string(),
                reason: error.to_string(),
            })?;
        let problems = catalog.problems();
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(ModelsError::CatalogInvalid {
                origin: origin.to_string(),
                problems,
            })
        }
    }

    /// The catalog compiled into this build.
    pub fn builtin() -> Result<Catalog> {
        Catalog::parse(BUILTIN_CATALOG_TOML, "built-in models/catalog.toml")
    }

    /// Every rule the catalog breaks, one line each; empty when valid.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.schema_version != CATALOG_SCHEMA_VERSION {
            problems.push(format!(
                "schema_version is {}, this build reads {CATALOG_SCHEMA_VERSION}",
                self.schema_version
            ));
        }
        if self.models.is_empty() {
            problems.push("the catalog lists no models".to_string());
        }
        let mut seen_ids = HashSet::new();
        for model in &self.models {
            model.collect_problems(&mut problems);
            if !seen_ids.insert(model.id.as_str()) {
                problems.push(format!("model id {:?} appears more than once", model.id));
            }
        }
        for model in &self.models {
            let Some(draft_id) = &model.draft_model else {
                continue;
            };
            match self.find(draft_id) {
                None => problems.push(format!(
                    "{}: draft_model {draft_id:?} is not one of the catalog's models",
                    model.id
                )),
                Some(draft)
                    if draft.family != model.family
                        || draft.parameters_billions >= model.parameters_billions =>
                {
                    problems.push(format!(
                        "{}: draft_model {draft_id:?} must be a smaller model of the same family",
                        model.id
                    ))
                }
                Some(_) => {}
            }
        }
        if self.find(&self.default_model).is_none() {
            problems.push(format!(
                "default_model {:?} is not one of the catalog's models",
                self.default_model
            ));
        }
        problems
    }

    /// The model with this id.
    pub fn find(&self, id: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|model| model.id == id)
    }

    /// The model with this id, or a clear error.
    pub fn get(&self, id: &str) -> Result<&CatalogModel> {
        self.find(id)
            .ok_or_else(|| ModelsError::UnknownCatalogModel { id: id.to_string() })
    }

    /// The model first-run setup falls back to.
    pub fn default_model(&self) -> Result<&CatalogModel> {
        self.get(&self.default_model)
    }
}

impl CatalogModel {
    /// The revision to download from.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    /// The repository, parsed.
    pub fn hub_repo(&self) -> Result<HubRepo> {
        HubRepo::parse(&self.repo)
    }

    /// The file for `quantization` (case-insensitive), or for the default quantization.
    pub fn file_for(&self, quantization: Option<&str>) -> Result<&CatalogFile> {
        let wanted = quantization.unwrap_or(&self.default_quantization);
        self.files
            .iter()
            .find(|file| file.quantization.eq_ignore_ascii_case(wanted))
            .ok_or_else(|| ModelsError::UnknownQuantization {
                id: self.id.clone(),
                quantization: wanted.to_string(),
                available: self
                    .files
                    .iter()
                    .map(|file| file.quantization.clone())
                    .collect(),
            })
    }

    fn collect_problems(&self, problems: &mut Vec<String>) {
        let id = &self.id;
        if let Err(error) = ModelId::new(id.as_str()) {
            problems.push(error.to_string());
        }
        if id.bytes().any(|byte| byte.is_ascii_uppercase()) {
            problems.push(format!("model id {id:?} must be lowercase"));
        }
        if let Err(error) = HubRepo::parse(&self.repo) {
            problems.push(format!("{id}: {error}"));
        }
        if let Some(revision) = &self.revision {
            if let Err(reason) = validate_revision(revision) {
                problems.push(format!("{id}: revision {revision:?}: {reason}"));
            }
        }
        for (field, value) in [
            ("display_name", &self.display_name),
            ("family", &self.family),
            ("license", &self.license),
            ("purpose", &self.purpose),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{id}: {field} is empty"));
            }
        }
        if !(self.parameters_billions.is_finite() && self.parameters_billions > 0.0) {
            problems.push(format!(
                "{id}: parameters_billions must be a positive number"
            ));
        }
        if self.context_length == Some(0) {
            problems.push(format!("{id}: context_length must be positive"));
        }
        if self.files.is_empty() {
            problems.push(format!("{id}: no files"));
        }
        let mut seen_quantizations = HashSet::new();
        for file in &self.files {
            file.collect_problems(id, problems);
            if !seen_quantizations.insert(file.quantization.to_ascii_uppercase()) {
                problems.push(format!(
                    "{id}: quantization {} is listed twice",
                    file.quantization
                ));
            }
        }
        if !self.files.iter().any(|file| {
            file.quantization
                .eq_ignore_ascii_case(&self.default_quantization)
        }) {
            problems.push(format!(
                "{id}: default_quantization {} has no file",
                self.default_quantization
            ));
        }
    }
}

impl CatalogFile {
    /// The verified digest, when the catalog carries one.
    pub fn sha256_digest(&self) -> Option<Sha256Digest> {
        self.sha256
            .as_deref()
            .and_then(|hex| Sha256Digest::from_hex(hex).ok())
    }

    /// The file name without the folders of the repository.
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }

    fn collect_problems(&self, id: &str, problems: &mut Vec<String>) {
        let quantization = &self.quantization;
        if !is_known_quantization(quantization) {
            problems.push(format!("{id}: unknown quantization {quantization:?}"));
        }
        if let Err(reason) = validate_repo_file_path(&self.file) {
            problems.push(format!("{id}: file {:?}: {reason}", self.file));
        }
        if !self.file.to_ascii_lowercase().ends_with(".gguf") {
            problems.push(format!("{id}: file {:?} is not a .gguf file", self.file));
        }
        // The quantization is always part of a GGUF file's name; a mismatch is a copy-paste
        // slip that would install a different quantization than the one the user chose.
        if !self
            .file_name()
            .to_ascii_uppercase()
            .contains(&quantization.to_ascii_uppercase())
        {
            problems.push(format!(
                "{id}: file {:?} does not look like a {quantization} file",
                self.file
            ));
        }
        if self.size_bytes == Some(0) {
            problems.push(format!("{id}: {quantization}: size_bytes must be positive"));
        }
        if let Some(sha256) = &self.sha256 {
            if !is_sha256_hex(sha256) || sha256.bytes().any(|byte| byte.is_ascii_uppercase()) {
                problems.push(format!(
                    "{id}: {quantization}: sha256 {sha256:?} is not 64 lowercase hex digits"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
schema_version = 1
default_model = "tiny"

[[models]]
id = "tiny"
display_name = "Tiny"
family = "Tiny"
repo = "someone/Tiny-GGUF"
license = "mit"
parameters_billions = 0.1
context_length = 2048
purpose = "tests"
default_quantization = "Q4_K_M"

[[models.files]]
quantization = "Q4_K_M"
file = "tiny-Q4_K_M.gguf"
"#;

    #[test]
    fn parses_a_valid_catalog() {
        let catalog = Catalog::parse(VALID, "test").unwrap();
        let model = catalog.default_model().unwrap();
        assert_eq!(model.revision(), "main");
        assert_eq!(model.file_for(None).unwrap().file, "tiny-Q4_K_M.gguf");
        assert_eq!(
            model.file_for(Some("q4_k_m")).unwrap().file,
            "tiny-Q4_K_M.gguf"
        );
        let error = model.file_for(Some("Q8_0")).unwrap_err().to_string();
        assert!(error.contains("Q4_K_M"), "{error}");
    }

    #[test]
    fn reports_every_problem() {
        let broken = VALID
            .replace("default_model = \"tiny\"", "default_model = \"missing\"")
            .replace("someone/Tiny-GGUF", "not a repo")
            .replace("\nquantization = \"Q4_K_M\"", "\nquantization = \"Q9_Z\"")
            .replace(
                "file = \"tiny-Q4_K_M.gguf\"",
                "file = \"../tiny.gguf\"\nsha256 = \"xyz\"",
            );
        let error = Catalog::parse(&broken, "test").unwrap_err();
        let ModelsError::CatalogInvalid { problems, .. } = &error else {
            panic!("unexpected error {error}");
        };
        let all = problems.join("\n");
        for expected in [
            "default_model",
            "not a repo",
            "Q9_Z",
            "../tiny.gguf",
            "sha256",
            "default_quantization",
        ] {
            assert!(all.contains(expected), "{expected} missing from:\n{all}");
        }
    }

    #[test]
    fn a_draft_model_must_be_a_smaller_entry_of_the_same_family() {
        let model_table = &VALID[VALID.find("[[models]]").unwrap()..];
        let bigger = model_table
            .replace("id = \"tiny\"", "id = \"big\"\ndraft_model = \"tiny\"")
            .replace("parameters_billions = 0.1", "parameters_billions = 1.0");
        let catalog = Catalog::parse(&format!("{VALID}\n{bigger}"), "test").unwrap();
        assert_eq!(
            catalog.get("big").unwrap().draft_model.as_deref(),
            Some("tiny")
        );
        for (from, to, expected) in [
            (
                "draft_model = \"tiny\"",
                "draft_model = \"nothing\"",
                "not one of",
            ),
            (
                "draft_model = \"tiny\"",
                "draft_model = \"big\"",
                "smaller model",
            ),
            (
                "family = \"Tiny\"\nrepo",
                "family = \"Other\"\nrepo",
                "same family",
            ),
        ] {
            let broken = format!("{VALID}\n{}", bigger.replacen(from, to, 1));
            let error = Catalog::parse(&broken, "test").unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn rejects_unknown_fields_and_duplicates() {
        let unknown = VALID.replace("purpose = \"tests\"", "purpose = \"tests\"\nsize = 3");
        assert!(matches!(
            Catalog::parse(&unknown, "test"),
            Err(ModelsError::CatalogParse { .. })
        ));
        let model_table = &VALID[VALID.find("[[models]]").unwrap()..];
        let duplicated = format!("{VALID}\n{model_table}");
        let error = Catalog::parse(&duplicated, "test").unwrap_err().to_string();
        assert!(error.contains("more than once"), "{error}");
    }
}
