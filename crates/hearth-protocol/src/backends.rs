//! Which llama.cpp backends a worker found, loaded or could not load, and which one the user
//! asked for. A release build loads its backends (every CPU variant, CUDA, Vulkan, Metal) as
//! libraries at start; a developer build has them compiled in. Either way the worker reports
//! what it has in [`BackendReport`], and every front end shows the same report.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The environment variable that carries the backend choice to a worker (`--backend` sets it
/// for the workers a front end starts).
pub const BACKEND_ENV: &str = "HEARTH_BACKEND";
/// The environment variable that overrides where a release build looks for its backend
/// libraries (otherwise beside the binary; see `hearth_engine::backends`).
pub const BACKENDS_DIR_ENV: &str = "HEARTH_BACKENDS_DIR";

/// Which backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// Every backend that loads; one backend per GPU (CUDA, then Metal, then Vulkan); the CPU
    /// always.
    #[default]
    Auto,
    /// The CPU only: no GPU backend is loaded.
    Cpu,
    Vulkan,
    Cuda,
    Metal,
}

impl BackendChoice {
    pub const ALL: [BackendChoice; 5] = [
        BackendChoice::Auto,
        BackendChoice::Cpu,
        BackendChoice::Vulkan,
        BackendChoice::Cuda,
        BackendChoice::Metal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Vulkan => "vulkan",
            BackendChoice::Cuda => "cuda",
            BackendChoice::Metal => "metal",
        }
    }

    /// The GPU backend this choice forces, if it forces one (its library's short name).
    pub fn forced_gpu_backend(self) -> Option<&'static str> {
        match self {
            BackendChoice::Auto | BackendChoice::Cpu => None,
            BackendChoice::Vulkan | BackendChoice::Cuda | BackendChoice::Metal => {
                Some(self.as_str())
            }
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A backend name that is not one of [`BackendChoice`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?}: expected auto, cpu, vulkan, cuda or metal")]
pub struct UnknownBackend(pub String);

impl FromStr for BackendChoice {
    type Err = UnknownBackend;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim().to_ascii_lowercase();
        BackendChoice::ALL
            .into_iter()
            .find(|choice| choice.as_str() == wanted)
            .ok_or_else(|| UnknownBackend(text.to_string()))
    }
}

/// How llama.cpp's backends reached the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendBuild {
    /// Compiled into the binary (the developer build, for the CPU it was built on).
    #[default]
    Static,
    /// Loaded at start from backend libraries beside the binary (the release build).
    Dynamic,
}

/// What became of one backend library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LibraryState {
    /// Loaded and registered with llama.cpp.
    Loaded,
    /// Loaded, but it found no device (no GPU of its kind, or no driver).
    NoDevice,
    /// A CPU variant this CPU can run, passed over for a better one.
    NotChosen,
    /// A CPU variant whose instructions this CPU lacks.
    Unsupported,
    /// Not loaded because of the backend choice.
    Skipped,
    /// Could not be loaded: `reason` says why (a missing driver or runtime library, a broken
    /// file).
    Failed,
}

/// One backend library file and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendLibrary {
    /// The file name (never the full path).
    pub file_name: String,
    /// `cpu`, `cuda`, `vulkan`, `metal`, … (from the file name).
    pub backend: String,
    /// The CPU variant (`haswell`, `sse42`, …), for CPU libraries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub state: LibraryState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The worker's backends: how they were built, what was asked for, each library's fate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BackendReport {
    pub build: BackendBuild,
    pub choice: BackendChoice,
    /// Every backend library found (empty for a static build).
    #[serde(default)]
    pub libraries: Vec<BackendLibrary>,
    /// The CPU variant in use (a release build), or `None` for a static build's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_variant: Option<String>,
    /// Why no model can be loaded with these backends (no CPU backend, a forced GPU backend
    /// that did not load), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BackendReport {
    /// One line per library for logs and `hearth probe`: `libggml-cuda.so: failed (…)`.
    pub fn library_lines(&self) -> Vec<String> {
        self.libraries
            .iter()
            .map(|library| {
                let state = match library.state {
                    LibraryState::Loaded => "loaded",
                    LibraryState::NoDevice => "loaded, no device",
                    LibraryState::NotChosen => "not chosen",
                    LibraryState::Unsupported => "unsupported by this CPU",
                    LibraryState::Skipped => "skipped",
                    LibraryState::Failed => "failed",
                };
                match &library.reason {
                    Some(reason) => format!("{}: {state} ({reason})", library.file_name),
                    None => format!("{}: {state}", library.file_name),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_from_their_names_and_nothing_else() {
        for choice in BackendChoice::ALL {
            assert_eq!(choice.as_str().parse::<BackendChoice>(), Ok(choice));
        }
        assert_eq!(" CUDA ".parse::<BackendChoice>(), Ok(BackendChoice::Cuda));
        assert!("rocm".parse::<BackendChoice>().is_err());
        assert!("".parse::<BackendChoice>().is_err());
        assert_eq!(BackendChoice::Cpu.forced_gpu_backend(), None);
        assert_eq!(BackendChoice::Vulkan.forced_gpu_backend(), Some("vulkan"));
    }

    #[test]
    fn an_old_devices_answer_without_a_report_still_parses() {
        let report: BackendReport = serde_json::from_str("{}").unwrap();
        assert_eq!(report.build, BackendBuild::Static);
        assert_eq!(report.choice, BackendChoice::Auto);
        let lines = BackendReport {
            libraries: vec![BackendLibrary {
                file_name: "libggml-cuda.so".into(),
                backend: "cuda".into(),
                variant: None,
                state: LibraryState::Failed,
                reason: Some("libcudart.so.13: cannot open shared object file".into()),
            }],
            ..BackendReport::default()
        }
        .library_lines();
        assert_eq!(
            lines,
            ["libggml-cuda.so: failed (libcudart.so.13: cannot open shared object file)"]
        );
    }
}
