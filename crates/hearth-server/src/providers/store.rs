//! Where providers are kept: `<data_dir>/providers.json` (names and base URLs, never a key)
//! and `<data_dir>/provider-keys.json` (by provider name: the key itself, or where it is kept
//! instead: the OS keychain on macOS and Windows, see [`super::secrets`]). Both are private
//! files (0600), written atomically. Keys live apart so that nothing that shows or logs the
//! providers' configuration can carry one, and the conversation history (SQLite) never sees
//! them.
//!
//! The rules for names and URLs are pure functions ([`validate_provider_name`],
//! [`normalize_base_url`]) with unit tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::secrets::{os_keychain, SecretVault};
use crate::private_file::write_private_atomically;

/// The providers' file in the data folder.
pub const PROVIDERS_FILE_NAME: &str = "providers.json";
/// The providers' keys file in the data folder.
pub const PROVIDER_KEYS_FILE_NAME: &str = "provider-keys.json";
/// Longest provider name: it prefixes every model id of the provider (`NAME/model`).
pub const MAX_PROVIDER_NAME_CHARS: usize = 32;
/// Longest base URL.
pub const MAX_BASE_URL_CHARS: usize = 512;
/// Longest API key (it travels in an HTTP header).
pub const MAX_PROVIDER_KEY_CHARS: usize = 4096;
/// Most providers: each is asked for its models when models are listed.
pub const MAX_PROVIDERS: usize = 32;
/// The name that stands for the engine on this machine; no remote may take it.
pub const LOCAL_PROVIDER_NAME: &str = "local";

/// One remote provider as stored and shown: never its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub name: String,
    /// The OpenAI-compatible base URL, ending in `/v1` (`…/v1/models`, `…/v1/chat/completions`).
    pub base_url: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ProvidersFile {
    providers: Vec<ProviderConfig>,
}

/// One entry of the keys file: the key itself, or the name of the keychain that keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredKey {
    InFile(String),
    Kept { kept_in: String },
}

/// Where a provider's key is kept, as `hearth provider ls` and `/api/providers` show it.
pub const KEY_IN_FILE: &str = "file";

/// Why a provider cannot be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderStoreError {
    #[error("invalid provider name `{name}`: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid base URL: {0}")]
    InvalidUrl(String),
    #[error("invalid API key: {0}")]
    InvalidKey(&'static str),
    #[error("a provider named `{0}` already exists (remove it first)")]
    Exists(String),
    #[error("no provider is named `{0}`")]
    NotFound(String),
    #[error("at most {MAX_PROVIDERS} providers can be added")]
    TooMany,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A provider name: 1 to 32 lowercase ASCII letters, digits, `-` or `_`, starting with a
/// letter, and not `local`. It is the first part of the provider's model ids (`NAME/model`),
/// so it can never contain `/`; local model ids never contain `/`, so the two never collide.
pub fn validate_provider_name(name: &str) -> Result<(), ProviderStoreError> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.chars().count() > MAX_PROVIDER_NAME_CHARS {
        Some("it is longer than 32 characters")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it must start with a lowercase letter")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        Some("only lowercase letters, digits, '-' and '_' are allowed")
    } else if name == LOCAL_PROVIDER_NAME {
        Some("`local` is the engine on this machine")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(reason) => Err(ProviderStoreError::InvalidName {
            name: name.chars().take(MAX_PROVIDER_NAME_CHARS + 8).collect(),
            reason,
        }),
    }
}

/// The base URL as stored: `http` or `https`, a host, no user or password (a key goes in
/// `--api-key-env`, never in a URL that is shown), no query or fragment, no trailing `/`, and
/// `/v1` appended when the URL has no path (`http://gpu-box:8000` means its `/v1` API).
pub fn normalize_base_url(url: &str) -> Result<String, ProviderStoreError> {
    let invalid = |reason: &str| ProviderStoreError::InvalidUrl(reason.to_string());
    let url = url.trim();
    if url.chars().count() > MAX_BASE_URL_CHARS {
        return Err(invalid("it is longer than 512 characters"));
    }
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else {
        return Err(invalid("it must start with http:// or https://"));
    };
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it must not have a query, a fragment or spaces"));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(invalid("it has no host"));
    }
    if authority.contains('@') {
        return Err(invalid(
            "it must not carry a user or password (give the key with --api-key-env)",
        ));
    }
    let path = path.trim_end_matches('/');
    let scheme = &url[..url.len() - rest.len()];
    Ok(if path.is_empty() {
        format!("{scheme}{authority}/v1")
    } else {
        format!("{scheme}{authority}/{path}")
    })
}

fn validate_key(key: &str) -> Result<(), ProviderStoreError> {
    if key.is_empty() {
        return Err(ProviderStoreError::InvalidKey("it is empty"));
    }
    if key.chars().count() > MAX_PROVIDER_KEY_CHARS {
        return Err(ProviderStoreError::InvalidKey("it is too long"));
    }
    if !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ProviderStoreError::InvalidKey(
            "it must be printable ASCII without spaces (it travels in an HTTP header)",
        ));
    }
    Ok(())
}

/// The two files, read and written one call at a time. Reads are fresh every time (the CLI
/// may change the files while a server runs); a file that cannot be read counts as empty and
/// is warned about, never fatal.
#[derive(Debug)]
pub struct ProviderStore {
    providers_path: PathBuf,
    keys_path: PathBuf,
    /// The OS keychain, where this platform has one.
    vault: Option<Arc<dyn SecretVault>>,
    lock: Mutex<()>,
}

impl ProviderStore {
    pub fn new(data_dir: &Path) -> Self {
        Self::with_vault(data_dir, os_keychain(data_dir))
    }

    /// A store that keeps keys in `vault` when it takes them (`None`: in the keys file).
    pub fn with_vault(data_dir: &Path, vault: Option<Arc<dyn SecretVault>>) -> Self {
        Self {
            providers_path: data_dir.join(PROVIDERS_FILE_NAME),
            keys_path: data_dir.join(PROVIDER_KEYS_FILE_NAME),
            vault,
            lock: Mutex::new(()),
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every provider, in the order they were added.
    pub fn list(&self) -> Vec<ProviderConfig> {
        let _guard = self.guard();
        self.read_providers().providers
    }

    /// The provider named `name`, if any.
    pub fn get(&self, name: &str) -> Option<ProviderConfig> {
        self.list()
            .into_iter()
            .find(|provider| provider.name == name)
    }

    /// The key of the provider named `name`, if it has one (and its keychain gives it).
    pub fn key(&self, name: &str) -> Option<String> {
        let _guard = self.guard();
        match self.read_keys().remove(name)? {
            StoredKey::InFile(key) => Some(key),
            StoredKey::Kept { kept_in } => {
                let vault = self.vault.as_ref().filter(|vault| vault.name() == kept_in);
                match vault.map(|vault| vault.load(name)) {
                    Some(Ok(Some(key))) => Some(key),
                    Some(Ok(None)) => {
                        tracing::warn!(
                            provider = name,
                            kept_in,
                            "the provider's key is gone from the keychain"
                        );
                        None
                    }
                    Some(Err(error)) => {
                        tracing::warn!(provider = name, kept_in, %error, "cannot read the provider's key from the keychain");
                        None
                    }
                    None => {
                        tracing::warn!(
                            provider = name,
                            kept_in,
                            "the provider's key is in a keychain this platform does not have"
                        );
                        None
                    }
                }
            }
        }
    }

    /// Where the key of the provider named `name` is kept ([`KEY_IN_FILE`] or the keychain's
    /// name), `None` when it has none. Never asks the keychain (which may prompt the user).
    pub fn key_storage(&self, name: &str) -> Option<String> {
        let _guard = self.guard();
        self.read_keys().remove(name).map(|stored| match stored {
            StoredKey::InFile(_) => KEY_IN_FILE.to_string(),
            StoredKey::Kept { kept_in } => kept_in,
        })
    }

    /// Adds a provider (and its key); the name must be new.
    pub fn add(
        &self,
        name: &str,
        base_url: &str,
        key: Option<&str>,
    ) -> Result<ProviderConfig, ProviderStoreError> {
        validate_provider_name(name)?;
        let base_url = normalize_base_url(base_url)?;
        if let Some(key) = key {
            validate_key(key)?;
        }
        let _guard = self.guard();
        let mut file = self.read_providers();
        if file.providers.iter().any(|provider| provider.name == name) {
            return Err(ProviderStoreError::Exists(name.to_string()));
        }
        if file.providers.len() >= MAX_PROVIDERS {
            return Err(ProviderStoreError::TooMany);
        }
        let config = ProviderConfig {
            name: name.to_string(),
            base_url,
        };
        // The key first: a provider is never listed without the key it was added with.
        let mut keys = self.read_keys();
        match key {
            Some(key) => keys.insert(name.to_string(), self.keep(name, key)),
            None => keys.remove(name),
        };
        self.write(&self.keys_path, &keys)?;
        file.providers.push(config.clone());
        self.write(&self.providers_path, &file)?;
        Ok(config)
    }

    /// Removes a provider and its key.
    pub fn remove(&self, name: &str) -> Result<(), ProviderStoreError> {
        let _guard = self.guard();
        let mut file = self.read_providers();
        let before = file.providers.len();
        file.providers.retain(|provider| provider.name != name);
        if file.providers.len() == before {
            return Err(ProviderStoreError::NotFound(name.to_string()));
        }
        self.write(&self.providers_path, &file)?;
        let mut keys = self.read_keys();
        if let Some(stored) = keys.remove(name) {
            self.write(&self.keys_path, &keys)?;
            if let (StoredKey::Kept { .. }, Some(vault)) = (stored, &self.vault) {
                if let Err(error) = vault.delete(name) {
                    tracing::warn!(provider = name, %error, "cannot remove the provider's key from the keychain");
                }
            }
        }
        Ok(())
    }

    /// Puts `key` in the keychain when there is one that takes it, else in the keys file.
    fn keep(&self, name: &str, key: &str) -> StoredKey {
        let Some(vault) = &self.vault else {
            return StoredKey::InFile(key.to_string());
        };
        match vault.store(name, key) {
            Ok(()) => StoredKey::Kept {
                kept_in: vault.name().to_string(),
            },
            Err(error) => {
                tracing::warn!(provider = name, %error, "the keychain refused the provider's key; it is kept in the private keys file");
                StoredKey::InFile(key.to_string())
            }
        }
    }

    fn read_providers(&self) -> ProvidersFile {
        read_json(&self.providers_path).unwrap_or_default()
    }

    fn read_keys(&self) -> BTreeMap<String, StoredKey> {
        read_json(&self.keys_path).unwrap_or_default()
    }

    fn write<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), ProviderStoreError> {
        let text =
            serde_json::to_string_pretty(value).map_err(|error| ProviderStoreError::Write {
                path: path.to_path_buf(),
                source: std::io::Error::other(error),
            })?;
        write_private_atomically(path, text.as_bytes()).map_err(|source| {
            ProviderStoreError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// A JSON file's value; `None` when it is missing, or unreadable (warned about, without its
/// contents: the keys file must never reach the log).
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read a providers file");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                line = error.line(),
                "a providers file is not valid JSON; it is ignored"
            );
            None
        }
    }
}
