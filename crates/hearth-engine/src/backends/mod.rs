//! llama.cpp's backends: which are there, which loaded, which devices a model uses.
//!
//! A developer build has the CPU backend (and any GPU backend it was built with) compiled in. A
//! release build (`dynamic-backends`) carries them as libraries in a `backends` folder beside
//! the binary (see [`policy::backends_dir_candidates`]): every CPU variant, of which the best
//! one this CPU can run is loaded, and the GPU backends, each loaded if it can be. A library
//! that cannot load (no driver, no runtime library, a broken file) becomes one line of the
//! [`BackendReport`] with its reason, never a failure; the CPU is always there. The choice
//! (`HEARTH_BACKEND`, set by `--backend`) can force the CPU or one GPU backend.
//!
//! Everything happens once per process, before llama.cpp is initialised, on the first call of
//! [`backends`]: llama.cpp would otherwise load whatever it finds in the build machine's folder
//! that `llama-cpp-sys-2` bakes in.

mod native;
pub mod policy;

use std::sync::OnceLock;

use hearth_protocol::{BackendBuild, BackendChoice, BackendDevice, BackendReport, BACKEND_ENV};

use policy::{choose_gpu_devices, DeviceFacts, DeviceKind};

/// The backends of this process, loaded once.
#[derive(Debug)]
pub struct Backends {
    pub report: BackendReport,
}

/// Loads the backends on first use (reading `HEARTH_BACKEND` and `HEARTH_BACKENDS_DIR`) and
/// returns what happened.
pub fn backends() -> &'static Backends {
    static BACKENDS: OnceLock<Backends> = OnceLock::new();
    BACKENDS.get_or_init(|| {
        // ggml's reasons for refusing a library arrive through its log.
        crate::load::route_llama_logs();
        let choice = std::env::var(BACKEND_ENV)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .map(|value| value.parse::<BackendChoice>());
        let report = match choice {
            Some(Err(error)) => BackendReport {
                error: Some(format!("{BACKEND_ENV}: {error}")),
                ..BackendReport::default()
            },
            Some(Ok(choice)) => load(choice),
            None => load(BackendChoice::Auto),
        };
        for line in report.library_lines() {
            tracing::info!(target: "hearth_engine::backends", "{line}");
        }
        if let Some(error) = &report.error {
            tracing::error!(target: "hearth_engine::backends", "{error}");
        }
        Backends { report }
    })
}

#[cfg(not(feature = "dynamic-backends"))]
fn load(choice: BackendChoice) -> BackendReport {
    let mut report = BackendReport {
        build: BackendBuild::Static,
        choice,
        ..BackendReport::default()
    };
    report.error = forced_backend_error(choice, &device_facts(), &report);
    report
}

#[cfg(feature = "dynamic-backends")]
fn load(choice: BackendChoice) -> BackendReport {
    use hearth_protocol::{BackendLibrary, LibraryState, BACKENDS_DIR_ENV};
    use std::path::PathBuf;

    let mut report = BackendReport {
        build: BackendBuild::Dynamic,
        choice,
        ..BackendReport::default()
    };
    let override_dir = std::env::var_os(BACKENDS_DIR_ENV).map(PathBuf::from);
    let executable = std::env::current_exe().unwrap_or_default();
    let candidates = policy::backends_dir_candidates(&executable, override_dir.as_deref());
    let Some(dir) = candidates.iter().find(|dir| dir.is_dir()) else {
        tracing::error!(
            target: "hearth_engine::backends",
            "no backends folder: looked in {candidates:?}"
        );
        report.error = Some(format!(
            "this build loads llama.cpp's backends from a `{}` folder beside the program, and \
             there is none (set {BACKENDS_DIR_ENV} to its place)",
            policy::BACKENDS_FOLDER
        ));
        return report;
    };
    tracing::info!(target: "hearth_engine::backends", "loading backends from {}", dir.display());
    let mut files: Vec<(String, policy::LibraryName)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().is_file())
                .filter_map(|entry| {
                    let file_name = entry.file_name().to_string_lossy().into_owned();
                    policy::parse_library_name(&file_name).map(|name| (file_name, name))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let library = |file_name: &str, name: &policy::LibraryName, state, reason: Option<String>| {
        BackendLibrary {
            file_name: file_name.to_string(),
            backend: name.backend.clone(),
            variant: name.variant.clone(),
            state,
            reason,
        }
    };

    // GPU backends first, in order of preference, so that llama.cpp's own device order agrees.
    for backend in policy::GPU_BACKENDS_BY_PREFERENCE {
        for (file_name, name) in files.iter().filter(|(_, name)| name.backend == backend) {
            if !policy::should_load(choice, backend) {
                let reason = Some(format!("--backend {choice}"));
                report
                    .libraries
                    .push(library(file_name, name, LibraryState::Skipped, reason));
                continue;
            }
            let path = dir.join(file_name);
            let (state, reason) = match native::probe_library(&path) {
                Err(reason) => (LibraryState::Failed, Some(without_folder(&reason, dir))),
                Ok(Some(0)) => (
                    LibraryState::Failed,
                    Some("not supported on this system".to_string()),
                ),
                Ok(_) => {
                    crate::LlamaLogCapture::clear();
                    match native::load_library(&path) {
                        Some(registered) if registered.device_count == 0 => (
                            LibraryState::NoDevice,
                            Some(format!("{} found no device", registered.name)),
                        ),
                        Some(_) => (LibraryState::Loaded, None),
                        None => (
                            LibraryState::Failed,
                            Some(
                                crate::LlamaLogCapture::take()
                                    .last()
                                    .cloned()
                                    .unwrap_or_else(|| "the backend did not initialise".into()),
                            ),
                        ),
                    }
                }
            };
            report
                .libraries
                .push(library(file_name, name, state, reason));
        }
    }
    for (file_name, name) in files.iter().filter(|(_, name)| {
        name.backend != "cpu"
            && !policy::GPU_BACKENDS_BY_PREFERENCE.contains(&name.backend.as_str())
    }) {
        let reason = Some("a backend Hearth does not use".to_string());
        report
            .libraries
            .push(library(file_name, name, LibraryState::Skipped, reason));
    }

    // The CPU: score every variant, load the best that loads.
    let cpu_files: Vec<&(String, policy::LibraryName)> = files
        .iter()
        .filter(|(_, name)| name.backend == "cpu")
        .collect();
    let probes: Vec<Result<Option<i32>, String>> = cpu_files
        .iter()
        .map(|(file_name, _)| native::probe_library(&dir.join(file_name)))
        .collect();
    let mut scores: Vec<Option<i32>> = probes
        .iter()
        .map(|probe| probe.as_ref().ok().copied().flatten())
        .collect();
    let mut states: Vec<(LibraryState, Option<String>)> = probes
        .iter()
        .map(|probe| match probe {
            Err(reason) => (LibraryState::Failed, Some(without_folder(reason, dir))),
            Ok(Some(0)) => (LibraryState::Unsupported, None),
            Ok(None) => (
                LibraryState::Failed,
                Some("not a ggml CPU backend (no ggml_backend_score)".to_string()),
            ),
            Ok(Some(_)) => (LibraryState::NotChosen, None),
        })
        .collect();
    while let Some(best) = policy::best_cpu_variant(&scores) {
        let (file_name, name) = cpu_files[best];
        crate::LlamaLogCapture::clear();
        if native::load_library(&dir.join(file_name)).is_some() {
            states[best] = (LibraryState::Loaded, None);
            report.cpu_variant = Some(name.variant.clone().unwrap_or_else(|| "default".into()));
            break;
        }
        let reason = crate::LlamaLogCapture::take().last().cloned();
        states[best] = (
            LibraryState::Failed,
            Some(reason.unwrap_or_else(|| "the backend did not initialise".into())),
        );
        scores[best] = None;
    }
    for ((file_name, name), (state, reason)) in cpu_files.into_iter().zip(states) {
        report
            .libraries
            .push(library(file_name, name, state, reason));
    }
    if report.cpu_variant.is_none() || native::registered_backend_count() == 0 {
        report.error = Some(format!(
            "no CPU backend could be loaded from the `{}` folder",
            policy::BACKENDS_FOLDER
        ));
        return report;
    }
    report.error = forced_backend_error(choice, &device_facts(), &report);
    report
}

/// `reason` with the backends folder cut from the paths in it: reports leave the worker, and
/// the folder can name the user (`/home/NAME/…`).
#[cfg(feature = "dynamic-backends")]
fn without_folder(reason: &str, dir: &std::path::Path) -> String {
    let folder = format!("{}{}", dir.display(), std::path::MAIN_SEPARATOR);
    reason.replace(&folder, "")
}

/// A forced GPU backend with no device to use is an error (the user asked for it by name);
/// under `auto` a missing GPU is just the CPU.
fn forced_backend_error(
    choice: BackendChoice,
    devices: &[DeviceFacts],
    report: &BackendReport,
) -> Option<String> {
    let forced = choice.forced_gpu_backend()?;
    if !choose_gpu_devices(devices, choice).is_empty() {
        return None;
    }
    let why = report
        .libraries
        .iter()
        .filter(|library| library.backend == forced)
        .filter_map(|library| library.reason.clone())
        .collect::<Vec<_>>();
    Some(if why.is_empty() {
        format!("--backend {choice}: this build has no {forced} backend or it found no device")
    } else {
        format!(
            "--backend {choice}: the {forced} backend is not usable: {}",
            why.join("; ")
        )
    })
}

fn device_facts() -> Vec<DeviceFacts> {
    native::devices()
        .into_iter()
        .map(|device| DeviceFacts {
            backend: device.backend.to_ascii_lowercase(),
            description: device.description,
            kind: device.kind,
            device_id: device.device_id,
        })
        .collect()
}

/// The ggml device indices a model's offloaded layers may use (see
/// [`policy::choose_gpu_devices`]); empty means the CPU only.
pub fn gpu_device_indices() -> Vec<usize> {
    // Load first: before that, a release build's registry has no device at all.
    let choice = backends().report.choice;
    choose_gpu_devices(&device_facts(), choice)
}

/// The devices llama.cpp's backends offer, with their memory, and whether Hearth uses each.
pub fn backend_devices() -> Vec<BackendDevice> {
    let _ = backends();
    let used = gpu_device_indices();
    native::devices()
        .into_iter()
        .enumerate()
        .map(|(index, device)| BackendDevice {
            name: device.name,
            description: device.description,
            backend: device.backend,
            device_type: match device.kind {
                DeviceKind::Cpu => "cpu",
                DeviceKind::Gpu => "gpu",
                DeviceKind::IntegratedGpu => "integrated_gpu",
                DeviceKind::Other => "accelerator",
            }
            .to_string(),
            memory_total_bytes: device.memory_total,
            memory_free_bytes: device.memory_free,
            device_id: device.device_id,
            used: device.kind == DeviceKind::Cpu || used.contains(&index),
        })
        .collect()
}

/// The names of the devices at `indices` (`CUDA0`), for reports.
pub fn device_names(indices: &[usize]) -> Vec<String> {
    let _ = backends();
    let devices = native::devices();
    indices
        .iter()
        .filter_map(|&index| devices.get(index).map(|device| device.name.clone()))
        .collect()
}
