//! The app's settings: `GET`/`PATCH /api/settings`, kept in `<data_dir>/settings.json`.
//!
//! - `theme`: `system`, `light` or `dark` (the UI applies it).
//! - `default_model`: the model a conversation uses when neither the request nor the
//!   conversation names one (`null`: the first model served).
//! - `api_port`: the port the desktop app serves the API on for other programs.
//! - `api_key`: the key other programs use. Write-only: reads show only `api_key_set`, so a
//!   page that can read the settings cannot read the key. The desktop shell passes it to
//!   [`crate::start`] besides its per-launch token. Changing or removing a set key needs the
//!   current one (`current_api_key` in the same PATCH; 403 otherwise), and an empty key is
//!   refused (400).
//! - `require_key_for_openai_api`: `/v1/*` and `/metrics` need a key even on a loopback server
//!   without a user key (default false: OpenAI-style tools on this machine work without one).
//! - `check_for_updates`: the desktop app may ask the release feed whether a newer Hearth
//!   exists (default false: nothing contacts the network unless the user turns this on).
//! - `kv_cache_disk_budget_mb`: the most the KV cache's disk tier (`<data_dir>/kv-cache`,
//!   see [`crate::kv_cache`]) may hold, in MiB (0: no disk tier); applies to models loaded
//!   from the next start of the server.
//! - `ollama_api`: also serve Ollama's API on 127.0.0.1:11434 (the desktop app from its next
//!   start, and `hearth serve` without `--ollama`; default false).
//! - `data_dir`: where everything lives; shown, never changed here.
//!
//! Writes are atomic (a new file renamed over the old one, so a crash leaves the old settings
//! or the new ones, never half of each) and, on Unix, readable by the user only (the file holds
//! a key). A file that cannot be read or parsed gives the defaults and a logged warning, never
//! a failed request; the next write moves it aside as `settings.json.corrupt` and starts over.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ApiError, TYPE_SERVER};
use crate::handlers::JsonBody;
use crate::{AppState, DEFAULT_PORT};

/// The settings file inside the data directory.
pub const SETTINGS_FILE_NAME: &str = "settings.json";
/// Where a settings file that could not be parsed is moved before a new one is written.
const CORRUPT_SUFFIX: &str = ".corrupt";
/// The longest API key accepted (a key is a token, not a document).
pub const MAX_API_KEY_CHARS: usize = 256;
/// The themes the UI knows.
pub const THEMES: &[&str] = &["system", "light", "dark"];
/// The lowest port offered to other programs: ports below need privileges on Unix.
pub const MIN_API_PORT: u16 = 1024;
/// The largest disk budget for the KV cache, in MiB (1 TiB).
pub const MAX_KV_CACHE_DISK_BUDGET_MB: u64 = 1 << 20;
const MIB: u64 = 1 << 20;

/// The settings as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub theme: String,
    pub default_model: Option<String>,
    pub api_port: u16,
    pub api_key: Option<String>,
    pub require_key_for_openai_api: bool,
    pub check_for_updates: bool,
    pub kv_cache_disk_budget_mb: u64,
    pub ollama_api: bool,
}

impl Settings {
    /// The KV cache's disk budget in bytes.
    pub fn kv_cache_disk_budget_bytes(&self) -> u64 {
        self.kv_cache_disk_budget_mb.saturating_mul(MIB)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            theme: THEMES[0].to_string(),
            default_model: None,
            api_port: DEFAULT_PORT,
            api_key: None,
            require_key_for_openai_api: false,
            check_for_updates: false,
            kv_cache_disk_budget_mb: hearth_protocol::DEFAULT_KV_DISK_BUDGET_BYTES / MIB,
            ollama_api: false,
        }
    }
}

/// Changes to the settings: `None` leaves a field alone; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub theme: Option<String>,
    pub default_model: Option<Option<String>>,
    pub api_port: Option<u16>,
    pub api_key: Option<Option<String>>,
    pub require_key_for_openai_api: Option<bool>,
    pub check_for_updates: Option<bool>,
    pub kv_cache_disk_budget_mb: Option<u64>,
    pub ollama_api: Option<bool>,
    /// The key set now, which a change of `api_key` must name.
    pub current_api_key: Option<String>,
}

impl SettingsPatch {
    /// Whether this patch may apply to `settings`: changing or removing a set key needs it.
    fn allowed_on(&self, settings: &Settings) -> bool {
        match (&self.api_key, &settings.api_key) {
            (Some(_), Some(current)) => self.current_api_key.as_deref().is_some_and(|given| {
                crate::security::keys_match(current.as_bytes(), given.as_bytes())
            }),
            _ => true,
        }
    }

    fn apply(self, settings: &mut Settings) {
        if let Some(theme) = self.theme {
            settings.theme = theme;
        }
        if let Some(default_model) = self.default_model {
            settings.default_model = default_model;
        }
        if let Some(api_port) = self.api_port {
            settings.api_port = api_port;
        }
        if let Some(api_key) = self.api_key {
            settings.api_key = api_key;
        }
        if let Some(require) = self.require_key_for_openai_api {
            settings.require_key_for_openai_api = require;
        }
        if let Some(check) = self.check_for_updates {
            settings.check_for_updates = check;
        }
        if let Some(budget) = self.kv_cache_disk_budget_mb {
            settings.kv_cache_disk_budget_mb = budget;
        }
        if let Some(ollama_api) = self.ollama_api {
            settings.ollama_api = ollama_api;
        }
    }
}

/// Why the settings could not be saved.
#[derive(Debug, thiserror::Error)]
#[error("cannot save the settings to {path}: {source}")]
pub struct SettingsError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// `<data_dir>/settings.json`, read and written one call at a time.
#[derive(Debug)]
pub struct SettingsStore {
    data_dir: PathBuf,
    path: PathBuf,
    /// Serialises read-modify-write cycles (two PATCHes never lose each other's change).
    lock: Mutex<()>,
}

impl SettingsStore {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            path: data_dir.join(SETTINGS_FILE_NAME),
            data_dir,
            lock: Mutex::new(()),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The settings: the defaults when there is no file, or when it cannot be read (logged).
    pub fn load(&self) -> Settings {
        let _guard = self.guard();
        self.read().unwrap_or_default()
    }

    /// The file's settings; `None` (logged) when it exists but cannot be read or parsed.
    fn read(&self) -> Option<Settings> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Some(Settings::default())
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the settings; using the defaults");
                return None;
            }
        };
        match serde_json::from_str::<Settings>(&text) {
            Ok(settings) if valid_stored(&settings) => Some(settings),
            Ok(_) => {
                tracing::warn!(path = %self.path.display(), "the settings hold values out of range; using the defaults");
                None
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "the settings file is corrupt; using the defaults");
                None
            }
        }
    }

    /// Applies `patch` and saves the result atomically; returns the new settings.
    pub fn update(&self, patch: SettingsPatch) -> Result<Settings, SettingsError> {
        self.update_checked(patch)?.ok_or_else(|| SettingsError {
            path: self.path.clone(),
            source: std::io::Error::other("the current API key was not given"),
        })
    }

    /// [`SettingsStore::update`], or `None` (nothing written) when the patch changes a set
    /// API key without naming the current one (checked under the same lock as the write).
    pub fn update_checked(&self, patch: SettingsPatch) -> Result<Option<Settings>, SettingsError> {
        let _guard = self.guard();
        let mut settings = match self.read() {
            Some(settings) => settings,
            None => {
                // Keep the unreadable file for the curious instead of overwriting it.
                let aside = self
                    .path
                    .with_file_name(format!("{SETTINGS_FILE_NAME}{CORRUPT_SUFFIX}"));
                if let Err(error) = std::fs::rename(&self.path, &aside) {
                    tracing::warn!(%error, "cannot move the corrupt settings aside");
                }
                Settings::default()
            }
        };
        if !patch.allowed_on(&settings) {
            return Ok(None);
        }
        patch.apply(&mut settings);
        self.write(&settings).map_err(|source| SettingsError {
            path: self.path.clone(),
            source,
        })?;
        Ok(Some(settings))
    }

    /// Writes the settings (they can hold an API key) as a private file, atomically
    /// ([`crate::private_file`]).
    fn write(&self, settings: &Settings) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(settings).map_err(std::io::Error::other)?;
        crate::private_file::write_private_atomically(&self.path, text.as_bytes())
    }
}

/// Stored values the API would refuse make the file count as corrupt.
fn valid_stored(settings: &Settings) -> bool {
    THEMES.contains(&settings.theme.as_str())
        && settings.api_port >= MIN_API_PORT
        && settings.kv_cache_disk_budget_mb <= MAX_KV_CACHE_DISK_BUDGET_MB
        && settings
            .api_key
            .as_deref()
            .is_none_or(|key| validate_api_key(key).is_ok())
}

fn validate_api_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("it is empty (send null to remove the key)");
    }
    if key.chars().count() > MAX_API_KEY_CHARS {
        return Err("it is too long");
    }
    if !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err("it must be printable ASCII without spaces (it travels in an HTTP header)");
    }
    Ok(())
}

/// The settings as the API shows them: the key only as `api_key_set`. Fields in sorted
/// order, as the `json!` object it replaced sent them ([`crate::wire`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerSettings {
    pub api_key_set: bool,
    pub api_port: u16,
    pub check_for_updates: bool,
    pub data_dir: String,
    pub default_model: Option<String>,
    pub kv_cache_disk_budget_mb: u64,
    pub ollama_api: bool,
    pub require_key_for_openai_api: bool,
    pub theme: String,
}

impl ServerSettings {
    pub fn new(settings: &Settings, data_dir: &Path) -> Self {
        Self {
            api_key_set: settings.api_key.is_some(),
            api_port: settings.api_port,
            check_for_updates: settings.check_for_updates,
            data_dir: data_dir.display().to_string(),
            default_model: settings.default_model.clone(),
            kv_cache_disk_budget_mb: settings.kv_cache_disk_budget_mb,
            ollama_api: settings.ollama_api,
            require_key_for_openai_api: settings.require_key_for_openai_api,
            theme: settings.theme.clone(),
        }
    }
}

/// Validates a PATCH body field by field; `model_exists` says whether a model id is served.
pub fn parse_patch(
    body: &Value,
    model_exists: impl Fn(&str) -> bool,
) -> Result<SettingsPatch, ApiError> {
    let Some(object): Option<&Map<String, Value>> = body.as_object() else {
        return Err(ApiError::bad_request(
            "invalid_type",
            "The request body must be a JSON object.",
        ));
    };
    let mut patch = SettingsPatch::default();
    for (key, value) in object {
        match key.as_str() {
            "theme" => match value.as_str() {
                Some(theme) if THEMES.contains(&theme) => patch.theme = Some(theme.to_string()),
                _ => {
                    return Err(ApiError::invalid_param(
                        "theme",
                        format!("'theme' must be one of {}.", THEMES.join(", ")),
                    ))
                }
            },
            "default_model" => match value {
                Value::Null => patch.default_model = Some(None),
                Value::String(model) if model_exists(model) => {
                    patch.default_model = Some(Some(model.clone()))
                }
                Value::String(model) => return Err(ApiError::model_not_found(model)),
                _ => {
                    return Err(ApiError::invalid_param(
                        "default_model",
                        "'default_model' must be a model id or null.",
                    ))
                }
            },
            "api_port" => match value.as_u64().and_then(|port| u16::try_from(port).ok()) {
                Some(port) if port >= MIN_API_PORT => patch.api_port = Some(port),
                _ => {
                    return Err(ApiError::invalid_param(
                        "api_port",
                        format!("'api_port' must be a whole number from {MIN_API_PORT} to 65535."),
                    ))
                }
            },
            "api_key" => match value {
                Value::Null => patch.api_key = Some(None),
                Value::String(key) => match validate_api_key(key) {
                    Ok(()) => patch.api_key = Some(Some(key.clone())),
                    // The key is never repeated back.
                    Err(reason) => {
                        return Err(ApiError::invalid_param(
                            "api_key",
                            format!("'api_key' is invalid: {reason}."),
                        ))
                    }
                },
                _ => {
                    return Err(ApiError::invalid_param(
                        "api_key",
                        "'api_key' must be a string, or null to remove the key.",
                    ))
                }
            },
            "current_api_key" => match value {
                Value::String(key) => patch.current_api_key = Some(key.clone()),
                _ => {
                    return Err(ApiError::invalid_param(
                        "current_api_key",
                        "'current_api_key' must be a string.",
                    ))
                }
            },
            "require_key_for_openai_api" => match value {
                Value::Bool(require) => patch.require_key_for_openai_api = Some(*require),
                _ => {
                    return Err(ApiError::invalid_param(
                        "require_key_for_openai_api",
                        "'require_key_for_openai_api' must be true or false.",
                    ))
                }
            },
            "check_for_updates" => match value {
                Value::Bool(check) => patch.check_for_updates = Some(*check),
                _ => {
                    return Err(ApiError::invalid_param(
                        "check_for_updates",
                        "'check_for_updates' must be true or false.",
                    ))
                }
            },
            "kv_cache_disk_budget_mb" => match value.as_u64() {
                Some(budget) if budget <= MAX_KV_CACHE_DISK_BUDGET_MB => {
                    patch.kv_cache_disk_budget_mb = Some(budget)
                }
                _ => {
                    return Err(ApiError::invalid_param(
                        "kv_cache_disk_budget_mb",
                        format!("'kv_cache_disk_budget_mb' must be a whole number of MiB from 0 to {MAX_KV_CACHE_DISK_BUDGET_MB}."),
                    ))
                }
            },
            "ollama_api" => match value {
                Value::Bool(serve) => patch.ollama_api = Some(*serve),
                _ => {
                    return Err(ApiError::invalid_param(
                        "ollama_api",
                        "'ollama_api' must be true or false.",
                    ))
                }
            },
            "data_dir" | "api_key_set" => {
                return Err(ApiError::invalid_param(
                    key.as_str(),
                    format!("'{key}' cannot be changed here."),
                )
                .with_code("read_only"))
            }
            _ => {
                return Err(ApiError::invalid_param(
                    key.as_str(),
                    format!("Unknown setting '{key}': the settings are theme, default_model, api_port, api_key (with current_api_key), require_key_for_openai_api, check_for_updates, kv_cache_disk_budget_mb and ollama_api."),
                ))
            }
        }
    }
    Ok(patch)
}

/// The settings routes, merged into [`crate::router`].
pub fn router() -> Router<AppState> {
    Router::new().route("/api/settings", get(show_settings).patch(update_settings))
}

pub(crate) fn store(state: &AppState) -> Result<&SettingsStore, ApiError> {
    state.settings.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            TYPE_SERVER,
            "This server keeps no settings.",
        )
        .with_code("settings_unavailable")
    })
}

/// The default model, when settings exist and name one this server can serve.
pub fn default_model(state: &AppState) -> Option<String> {
    let settings = state.settings.as_deref()?.load();
    settings
        .default_model
        .filter(|model| state.models.knows(model))
}

async fn show_settings(State(state): State<AppState>) -> Result<Json<ServerSettings>, ApiError> {
    let store = store(&state)?;
    Ok(Json(ServerSettings::new(&store.load(), store.data_dir())))
}

async fn update_settings(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<ServerSettings>, ApiError> {
    let store = store(&state)?;
    let patch = parse_patch(&body, |model| state.models.knows(model))?;
    let settings = store.update_checked(patch).map_err(|error| {
        tracing::error!(%error, "cannot save the settings");
        ApiError::internal("settings_error", "The settings could not be saved.")
    })?;
    let Some(settings) = settings else {
        return Err(ApiError::forbidden(
            "current_api_key_required",
            "Changing or removing the API key needs the current one: send it as 'current_api_key'.",
        )
        .with_param("current_api_key"));
    };
    Ok(Json(ServerSettings::new(&settings, store.data_dir())))
}

#[cfg(test)]
mod tests;
