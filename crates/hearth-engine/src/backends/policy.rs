//! The pure rules of backend loading: where a release build's backend libraries are, what a
//! library's file name says, which CPU variant wins, and which GPU devices a model uses.

use std::path::{Path, PathBuf};

use hearth_protocol::BackendChoice;

/// The folder name the release layouts keep backend libraries in.
pub const BACKENDS_FOLDER: &str = "backends";

/// Where a release build looks for its backend libraries, in order; the first folder that
/// exists is used. `override_dir` is `HEARTH_BACKENDS_DIR`. The build machine's folder (which
/// `llama-cpp-sys-2` bakes in) is never among them: an installed app uses only its own files.
pub fn backends_dir_candidates(executable: &Path, override_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = override_dir {
        return vec![dir.to_path_buf()];
    }
    let Some(executable_dir) = executable.parent() else {
        return Vec::new();
    };
    vec![
        // A portable folder or the Windows install: backends/ beside the binary.
        executable_dir.join(BACKENDS_FOLDER),
        // Linux packages: /usr/bin/hearth with /usr/lib/hearth/backends.
        executable_dir
            .join("..")
            .join("lib")
            .join("hearth")
            .join(BACKENDS_FOLDER),
        // A macOS app bundle: Contents/MacOS/hearth with Contents/Resources/backends.
        executable_dir
            .join("..")
            .join("Resources")
            .join(BACKENDS_FOLDER),
    ]
}

/// What a backend library's file name says: `libggml-cpu-haswell.so` is the `cpu` backend's
/// `haswell` variant; `ggml-cuda.dll` is `cuda`. `None` for files that are not backends
/// (`libggml-base.so`, `libllama.so`, anything else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryName {
    pub backend: String,
    pub variant: Option<String>,
}

/// The libraries in a backends folder that are not backends.
const NOT_BACKENDS: [&str; 2] = ["base", "ggml"];
/// File name endings of loadable libraries (ggml names backend modules `.so` on macOS too).
const LIBRARY_EXTENSIONS: [&str; 3] = [".so", ".dll", ".dylib"];

pub fn parse_library_name(file_name: &str) -> Option<LibraryName> {
    let stem = LIBRARY_EXTENSIONS
        .iter()
        .find_map(|extension| file_name.strip_suffix(extension))?;
    let stem = stem.strip_prefix("lib").unwrap_or(stem);
    let rest = stem.strip_prefix("ggml-")?;
    let (backend, variant) = match rest.split_once('-') {
        Some((backend, variant)) => (backend, Some(variant.to_string())),
        None => (rest, None),
    };
    if backend.is_empty()
        || NOT_BACKENDS.contains(&backend)
        || variant.as_deref() == Some("")
        || !backend.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    Some(LibraryName {
        backend: backend.to_string(),
        variant,
    })
}

/// The GPU backends Hearth loads, best first where two see the same GPU: the vendor's own
/// runtime over Vulkan (CUDA on NVIDIA, Metal on Apple), Vulkan for everything else.
pub const GPU_BACKENDS_BY_PREFERENCE: [&str; 3] = ["cuda", "metal", "vulkan"];

/// Whether a backend library should be loaded under `choice`.
pub fn should_load(choice: BackendChoice, backend: &str) -> bool {
    backend == "cpu"
        || match choice.forced_gpu_backend() {
            Some(forced) => backend == forced,
            None => choice == BackendChoice::Auto && GPU_BACKENDS_BY_PREFERENCE.contains(&backend),
        }
}

/// The CPU variant to use: the highest score (ggml's `ggml_backend_score`: 0 means this CPU
/// cannot run it); ties go to the first. Returns the index into `scores`.
pub fn best_cpu_variant(scores: &[Option<i32>]) -> Option<usize> {
    let mut best: Option<(usize, i32)> = None;
    for (index, score) in scores.iter().enumerate() {
        if let Some(score) = *score {
            if score > 0 && best.is_none_or(|(_, best_score)| score > best_score) {
                best = Some((index, score));
            }
        }
    }
    best.map(|(index, _)| index)
}

/// What the device choice needs to know of one ggml device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// ggml's registry name of its backend, lower-cased (`cuda`, `vulkan`, `cpu`).
    pub backend: String,
    pub description: String,
    pub kind: DeviceKind,
    /// PCI bus id, if the backend knows it.
    pub device_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Gpu,
    IntegratedGpu,
    Other,
}

/// The devices a model's offloaded layers may use, as indices into `devices`: each physical GPU
/// once, through the most preferred backend that sees it; integrated GPUs only when there is no
/// discrete one (as llama.cpp does); none under `BackendChoice::Cpu`. Two devices are the same
/// GPU when their PCI ids match, or, where a backend does not report one, when their
/// descriptions do.
pub fn choose_gpu_devices(devices: &[DeviceFacts], choice: BackendChoice) -> Vec<usize> {
    if choice == BackendChoice::Cpu {
        return Vec::new();
    }
    let preference = |backend: &str| {
        GPU_BACKENDS_BY_PREFERENCE
            .iter()
            .position(|preferred| *preferred == backend)
            .unwrap_or(GPU_BACKENDS_BY_PREFERENCE.len())
    };
    let allowed = |device: &DeviceFacts| match choice.forced_gpu_backend() {
        Some(forced) => device.backend == forced,
        None => true,
    };
    let pick = |kind: DeviceKind| {
        let mut candidates: Vec<usize> = (0..devices.len())
            .filter(|&index| devices[index].kind == kind && allowed(&devices[index]))
            .collect();
        // Stable: within one backend, llama.cpp's device order is kept.
        candidates.sort_by_key(|&index| preference(&devices[index].backend));
        let mut chosen: Vec<usize> = Vec::new();
        for index in candidates {
            let device = &devices[index];
            let seen = chosen.iter().any(|&other| {
                let other = &devices[other];
                other.backend != device.backend && same_physical_device(other, device)
            });
            if !seen {
                chosen.push(index);
            }
        }
        chosen.sort_unstable();
        chosen
    };
    let discrete = pick(DeviceKind::Gpu);
    if discrete.is_empty() {
        pick(DeviceKind::IntegratedGpu)
    } else {
        discrete
    }
}

fn same_physical_device(a: &DeviceFacts, b: &DeviceFacts) -> bool {
    match (&a.device_id, &b.device_id) {
        (Some(a_id), Some(b_id)) => a_id.eq_ignore_ascii_case(b_id),
        _ => a.description.trim() == b.description.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(backend: &str, description: &str, kind: DeviceKind, id: Option<&str>) -> DeviceFacts {
        DeviceFacts {
            backend: backend.to_string(),
            description: description.to_string(),
            kind,
            device_id: id.map(str::to_string),
        }
    }

    #[test]
    fn release_layouts_are_searched_beside_the_binary_never_elsewhere() {
        let candidates = backends_dir_candidates(Path::new("/usr/bin/hearth"), None);
        assert_eq!(candidates[0], Path::new("/usr/bin/backends"));
        assert_eq!(candidates[1], Path::new("/usr/bin/../lib/hearth/backends"));
        assert_eq!(candidates[2], Path::new("/usr/bin/../Resources/backends"));
        let forced = backends_dir_candidates(Path::new("/usr/bin/hearth"), Some(Path::new("/x")));
        assert_eq!(forced, [Path::new("/x")]);
    }

    #[test]
    fn library_names_are_parsed_on_every_platform() {
        let name = |backend: &str, variant: Option<&str>| {
            Some(LibraryName {
                backend: backend.to_string(),
                variant: variant.map(str::to_string),
            })
        };
        assert_eq!(
            parse_library_name("libggml-cpu-haswell.so"),
            name("cpu", Some("haswell"))
        );
        assert_eq!(
            parse_library_name("ggml-cpu-x64.dll"),
            name("cpu", Some("x64"))
        );
        assert_eq!(parse_library_name("libggml-cuda.so"), name("cuda", None));
        assert_eq!(parse_library_name("libggml-metal.so"), name("metal", None));
        assert_eq!(parse_library_name("libggml-base.so"), None);
        assert_eq!(parse_library_name("libggml.so"), None);
        assert_eq!(parse_library_name("libllama.so"), None);
        assert_eq!(parse_library_name("libggml-cuda.so.bak"), None);
        assert_eq!(parse_library_name("libggml-cpu-.so"), None);
        assert_eq!(parse_library_name("libggml-../x.so"), None);
    }

    #[test]
    fn the_choice_decides_which_libraries_load() {
        assert!(should_load(BackendChoice::Cpu, "cpu"));
        assert!(!should_load(BackendChoice::Cpu, "vulkan"));
        assert!(should_load(BackendChoice::Auto, "vulkan"));
        assert!(should_load(BackendChoice::Auto, "cuda"));
        assert!(!should_load(BackendChoice::Auto, "rpc"));
        assert!(should_load(BackendChoice::Vulkan, "vulkan"));
        assert!(!should_load(BackendChoice::Vulkan, "cuda"));
    }

    #[test]
    fn the_best_supported_cpu_variant_wins() {
        assert_eq!(
            best_cpu_variant(&[Some(0), Some(3), None, Some(7), Some(7)]),
            Some(3)
        );
        assert_eq!(best_cpu_variant(&[Some(0), None]), None);
        assert_eq!(best_cpu_variant(&[]), None);
    }

    #[test]
    fn one_gpu_seen_by_cuda_and_vulkan_is_used_once_through_cuda() {
        let devices = [
            device("cpu", "AMD Ryzen", DeviceKind::Cpu, None),
            device(
                "vulkan",
                "NVIDIA H200",
                DeviceKind::Gpu,
                Some("0000:c1:00.0"),
            ),
            device("cuda", "NVIDIA H200", DeviceKind::Gpu, Some("0000:C1:00.0")),
        ];
        assert_eq!(choose_gpu_devices(&devices, BackendChoice::Auto), [2]);
        assert_eq!(choose_gpu_devices(&devices, BackendChoice::Vulkan), [1]);
        assert_eq!(choose_gpu_devices(&devices, BackendChoice::Cuda), [2]);
        assert!(choose_gpu_devices(&devices, BackendChoice::Cpu).is_empty());
        assert!(choose_gpu_devices(&devices, BackendChoice::Metal).is_empty());
    }

    #[test]
    fn devices_without_ids_are_matched_by_description_and_two_gpus_stay_two() {
        let devices = [
            device("vulkan", "NVIDIA RTX 4090", DeviceKind::Gpu, None),
            device("vulkan", "AMD Radeon RX 7900", DeviceKind::Gpu, None),
            device(
                "cuda",
                "NVIDIA RTX 4090",
                DeviceKind::Gpu,
                Some("0000:01:00.0"),
            ),
        ];
        assert_eq!(choose_gpu_devices(&devices, BackendChoice::Auto), [1, 2]);
        // Two identical cards through one backend are two devices.
        let twins = [
            device("cuda", "NVIDIA A100", DeviceKind::Gpu, Some("0000:01:00.0")),
            device("cuda", "NVIDIA A100", DeviceKind::Gpu, Some("0000:02:00.0")),
        ];
        assert_eq!(choose_gpu_devices(&twins, BackendChoice::Auto), [0, 1]);
    }

    #[test]
    fn integrated_gpus_are_used_only_without_a_discrete_one() {
        let laptop = [
            device("cpu", "Intel Core", DeviceKind::Cpu, None),
            device("vulkan", "Intel Iris Xe", DeviceKind::IntegratedGpu, None),
        ];
        assert_eq!(choose_gpu_devices(&laptop, BackendChoice::Auto), [1]);
        let with_discrete = [
            device("vulkan", "Intel Iris Xe", DeviceKind::IntegratedGpu, None),
            device("vulkan", "NVIDIA RTX 3060", DeviceKind::Gpu, None),
        ];
        assert_eq!(choose_gpu_devices(&with_discrete, BackendChoice::Auto), [1]);
    }
}
