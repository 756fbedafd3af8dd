//! Model ids. An id names a folder under the models directory, so it is validated before it
//! ever becomes part of a path: no separators, no `..`, nothing a file system treats specially.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ModelsError, Result};

/// Longest accepted id. Long enough for `publisher-model-size-variant-quant` names, short
/// enough that `<models dir>/<id>/<file>` stays far from Windows' 260-character path limit.
pub const MAX_MODEL_ID_LEN: usize = 96;

/// Device names that Windows reserves in every folder, with or without an extension.
const WINDOWS_RESERVED_NAMES: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// A validated model id: 1 to [`MAX_MODEL_ID_LEN`] ASCII letters, digits, `-`, `_` or `.`,
/// starting with a letter or digit, never containing `..`, never ending with `.`, never a
/// reserved device name. Such an id is always a single, ordinary path component.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelId(String);

impl ModelId {
    /// Validates `id` and wraps it.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        match id_problem(&id) {
            None => Ok(ModelId(id)),
            Some(reason) => Err(ModelsError::InvalidModelId { id, reason }),
        }
    }

    /// Makes a valid id out of any name (a file stem, a repository, an Ollama tag): lowercase,
    /// every run of other characters becomes one `-`, a `.gguf` suffix is dropped, and the
    /// result is cut to length. Falls back to `model` when nothing usable is left.
    pub fn suggest_from(name: &str) -> ModelId {
        let name = name.trim();
        let stem = strip_suffix_ignore_case(name, ".gguf").unwrap_or(name);
        let mut suggestion = String::with_capacity(stem.len());
        for character in stem.chars() {
            let character = character.to_ascii_lowercase();
            if character.is_ascii_alphanumeric() || character == '_' {
                suggestion.push(character);
            } else if character == '.' {
                // A dot only ever follows a letter, digit or underscore, so `..` cannot form.
                if !suggestion.is_empty() && !suggestion.ends_with(['.', '-']) {
                    suggestion.push('.');
                }
            } else if !suggestion.ends_with('-') {
                suggestion.push('-');
            }
        }
        let mut suggestion: String = suggestion
            .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
            .chars()
            .take(MAX_MODEL_ID_LEN)
            .collect();
        while suggestion.ends_with(['-', '.']) {
            suggestion.pop();
        }
        if id_problem(&suggestion).is_some() {
            // Only a reserved device name or an empty string gets here.
            suggestion = if suggestion.is_empty() {
                "model".to_string()
            } else {
                format!("model-{suggestion}")
            };
        }
        ModelId(suggestion)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let split_at = text.len().checked_sub(suffix.len())?;
    let (head, tail) = (text.get(..split_at)?, text.get(split_at..)?);
    tail.eq_ignore_ascii_case(suffix).then_some(head)
}

/// Why `id` is not a valid model id, or `None` when it is.
fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        return Some("it is empty");
    }
    if id.len() > MAX_MODEL_ID_LEN {
        return Some("it is longer than 96 characters");
    }
    if id.contains(['/', '\\']) {
        return Some("it contains a path separator");
    }
    if !id
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
    {
        return Some("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    if id.contains("..") {
        return Some("it contains '..'");
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return Some("it must start with a letter or a digit");
    }
    if id.ends_with('.') {
        return Some("it must not end with '.'");
    }
    let base_name = id.split('.').next().unwrap_or(id).to_ascii_lowercase();
    if WINDOWS_RESERVED_NAMES.contains(&base_name.as_str()) {
        return Some("it is a reserved device name on Windows");
    }
    None
}

impl fmt::Display for ModelId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for ModelId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, formatter)
    }
}

impl AsRef<str> for ModelId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ModelId {
    type Error = ModelsError;
    fn try_from(id: String) -> Result<Self> {
        ModelId::new(id)
    }
}

impl From<ModelId> for String {
    fn from(id: ModelId) -> String {
        id.0
    }
}

impl std::str::FromStr for ModelId {
    type Err = ModelsError;
    fn from_str(id: &str) -> Result<Self> {
        ModelId::new(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in [
            "smollm2-135m-instruct",
            "qwen2.5-0.5b-instruct-q4_k_m",
            "Llama-3.2-1B",
            "a",
            "7b",
        ] {
            assert!(ModelId::new(id).is_ok(), "{id} should be valid");
        }
        assert!(ModelId::new("a".repeat(MAX_MODEL_ID_LEN)).is_ok());
    }

    #[test]
    fn rejects_traversal_separators_and_oddities() {
        for id in [
            "",
            "..",
            "../etc",
            "a/../b",
            "a/b",
            "a\\b",
            "/etc/passwd",
            "C:\\models",
            "C:",
            ".hidden",
            "-flag",
            "a..b",
            "trailing.",
            "sp ace",
            "ünïcode",
            "nul",
            "CON.gguf",
            "tab\t",
            "new\nline",
        ] {
            assert!(ModelId::new(id).is_err(), "{id:?} should be rejected");
        }
        assert!(ModelId::new("a".repeat(MAX_MODEL_ID_LEN + 1)).is_err());
    }

    #[test]
    fn deserializing_validates() {
        let parsed: std::result::Result<ModelId, _> = serde_json::from_str("\"../escape\"");
        assert!(parsed.is_err());
        let parsed: ModelId = serde_json::from_str("\"fine-id\"").unwrap();
        assert_eq!(parsed.as_str(), "fine-id");
    }

    #[test]
    fn suggestions_are_always_valid() {
        assert_eq!(
            ModelId::suggest_from("SmolLM2-135M-Instruct.Q4_1.gguf").as_str(),
            "smollm2-135m-instruct.q4_1"
        );
        assert_eq!(
            ModelId::suggest_from("library/llama3.2:1b").as_str(),
            "library-llama3.2-1b"
        );
        assert_eq!(
            ModelId::suggest_from("../../etc/passwd").as_str(),
            "etc-passwd"
        );
        assert_eq!(ModelId::suggest_from("...").as_str(), "model");
        assert_eq!(ModelId::suggest_from("con").as_str(), "model-con");
        assert_eq!(ModelId::suggest_from("a...b").as_str(), "a.b");
        let long = ModelId::suggest_from(&"x".repeat(500));
        assert_eq!(long.as_str().len(), MAX_MODEL_ID_LEN);
        for odd in ["ü", "-.-", "a/b\\c", " model .gguf ", ".gguf"] {
            let suggestion = ModelId::suggest_from(odd);
            assert!(
                ModelId::new(suggestion.as_str()).is_ok(),
                "{odd:?} -> {suggestion}"
            );
        }
    }
}
