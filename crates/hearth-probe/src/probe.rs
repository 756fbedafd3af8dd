//! Reading the real machine: OS, CPU, memory, disk, GPU adapters (wgpu), the GPUs llama.cpp
//! can use (asked of the engine worker by the caller), and measured bandwidths (cached).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hearth_kernels::{GpuAdapterInfo, GpuDeviceType, GpuMeasurement};
use serde::{Deserialize, Serialize};

use crate::profile::{CpuProfile, DeviceProfile, GpuKind, GpuProfile, MemoryProfile};

/// Version of the probe's measurements. Cached results of another version are measured again
/// (a changed kernel measures something else).
pub const PROBE_VERSION: u32 = 1;
/// The cache file under the data directory.
pub const MEASUREMENT_CACHE_FILE: &str = "probe/measurements.json";
/// Bytes the CPU bandwidth kernel streams per pass (all threads).
const CPU_BANDWIDTH_BUFFER_BYTES: usize = hearth_kernels::DEFAULT_CPU_BUFFER_BYTES;
/// Passes of the CPU kernel; the best counts. Each takes about 15 ms on a laptop: more passes
/// make it likelier that one ran while the rest of the machine was quiet.
const CPU_BANDWIDTH_PASSES: usize = 10;

/// A device llama.cpp's backends report (ggml backend devices, asked of the engine worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlamaDevice {
    /// `CPU`, `CUDA0`, `Metal`, `Vulkan0`.
    pub name: String,
    pub description: String,
    /// The backend: `CPU`, `CUDA`, `Metal`, `Vulkan`, `BLAS`.
    pub backend: String,
    /// `cpu`, `gpu`, `integrated_gpu`, `accelerator`.
    pub device_type: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// The PCI bus id, where the backend reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Whether the engine offloads to it (a GPU that two backends see is used through one, and
    /// `--backend` may exclude some): only these enter the planner's profile.
    #[serde(default)]
    pub used: bool,
}

impl From<hearth_protocol::BackendDevice> for LlamaDevice {
    /// A device as the engine worker reports it, in the probe's terms.
    fn from(device: hearth_protocol::BackendDevice) -> Self {
        LlamaDevice {
            name: device.name,
            description: device.description,
            backend: device.backend,
            device_type: device.device_type,
            memory_total_bytes: device.memory_total_bytes,
            memory_free_bytes: device.memory_free_bytes,
            device_id: device.device_id,
            used: device.used,
        }
    }
}

/// Where a bandwidth figure came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedMeasurement {
    pub probe_version: u32,
    /// Seconds since the Unix epoch.
    pub measured_at: u64,
    pub cpu_read_bytes_per_second: Option<f64>,
    pub gpu: Option<GpuMeasurement>,
}

/// Measurement cache: one entry per device key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasurementCache {
    pub entries: std::collections::BTreeMap<String, CachedMeasurement>,
}

impl MeasurementCache {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(MEASUREMENT_CACHE_FILE)
    }

    /// The cache on disk; a missing or unreadable file is an empty cache.
    pub fn load(data_dir: &Path) -> MeasurementCache {
        std::fs::read(Self::path(data_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Writes the cache atomically (temporary file, then rename). Failure costs only the cache.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(data_dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(temporary, path)
    }

    /// The entry for `key` if it was measured by this probe version.
    pub fn current(&self, key: &str) -> Option<&CachedMeasurement> {
        self.entries
            .get(key)
            .filter(|entry| entry.probe_version == PROBE_VERSION)
    }
}

/// A GPU adapter as wgpu sees it, with its measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbedAdapter {
    pub adapter: GpuAdapterInfo,
    pub measurement: Option<GpuMeasurement>,
    /// Why it was not measured, when it was not.
    pub measurement_error: Option<String>,
    pub from_cache: bool,
}

/// Everything `hearth probe` reports: the planner's profile and what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub probe_version: u32,
    pub profile: DeviceProfile,
    /// Every adapter wgpu found (software rasterizers included).
    pub adapters: Vec<ProbedAdapter>,
    /// What llama.cpp's backends report (`None`: the worker was not asked or failed).
    pub llama_devices: Option<Vec<LlamaDevice>>,
    /// The engine's backend libraries: found, loaded or failed (with why), the CPU variant.
    #[serde(default)]
    pub backends: Option<hearth_protocol::BackendReport>,
    pub cpu_bandwidth_from_cache: bool,
    pub cache_path: PathBuf,
}

impl ProbeReport {
    /// A report that knows nothing (the probe could not run at all): one core of an unknown
    /// CPU, no memory, no GPU.
    pub fn empty() -> ProbeReport {
        ProbeReport {
            probe_version: PROBE_VERSION,
            profile: DeviceProfile {
                os: std::env::consts::OS.to_string(),
                cpu: CpuProfile {
                    model: "unknown CPU".into(),
                    architecture: std::env::consts::ARCH.into(),
                    physical_cores: 1,
                    logical_cores: 1,
                    features: Vec::new(),
                    read_bandwidth_bytes_per_second: None,
                },
                memory: MemoryProfile {
                    total_bytes: 0,
                    available_bytes: 0,
                },
                gpus: Vec::new(),
                unified_memory: false,
                models_disk_free_bytes: None,
            },
            adapters: Vec::new(),
            llama_devices: None,
            backends: None,
            cpu_bandwidth_from_cache: false,
            cache_path: PathBuf::new(),
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    /// Run the kernels (else use only cached figures).
    pub measure: bool,
    /// Measure again even when cached figures exist (the cache keeps the best figure seen:
    /// other programs can only make a measurement slower).
    pub refresh: bool,
}

impl ProbeOptions {
    /// The options for Hearth's data directory `data_dir`: the measurement cache there, the
    /// free disk of its models folder.
    pub fn for_data_dir(data_dir: PathBuf, measure: bool, refresh: bool) -> ProbeOptions {
        ProbeOptions {
            models_dir: hearth_supervisor::process::models_dir(&data_dir),
            data_dir,
            measure,
            refresh,
        }
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// SIMD and matrix features of this CPU that llama.cpp's kernels care about.
pub fn cpu_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut features: Vec<&str> = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        macro_rules! x86 {
            ($($feature:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($feature) { features.push($feature); })*
            };
        }
        x86!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi2",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "avxvnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! arm {
            ($($feature:tt),*) => {
                $(if std::arch::is_aarch64_feature_detected!($feature) { features.push($feature); })*
            };
        }
        arm!("neon", "dotprod", "i8mm", "fp16", "sve", "sve2", "sme", "bf16");
    }
    features.into_iter().map(str::to_string).collect()
}

fn os_description() -> String {
    let name = sysinfo::System::name().unwrap_or_else(|| std::env::consts::OS.to_string());
    match sysinfo::System::os_version() {
        Some(version) => format!("{name} {version} ({})", std::env::consts::OS),
        None => format!("{name} ({})", std::env::consts::OS),
    }
}

/// Whether an adapter shares system memory.
fn adapter_is_unified(adapter: &GpuAdapterInfo) -> bool {
    matches!(
        adapter.device_type,
        GpuDeviceType::IntegratedGpu | GpuDeviceType::Cpu
    ) || adapter.vendor == "Apple"
}

/// The wgpu adapter that is the same hardware as a llama.cpp device (by name).
fn matching_adapter<'a>(
    device: &LlamaDevice,
    adapters: &'a [ProbedAdapter],
) -> Option<&'a ProbedAdapter> {
    let description = device.description.to_ascii_lowercase();
    adapters.iter().find(|probed| {
        let name = probed.adapter.name.to_ascii_lowercase();
        !name.is_empty() && (description.contains(&name) || name.contains(&description))
    })
}

/// Builds the planner's GPU list: llama.cpp's GPU devices (only they can hold layers), with
/// the bandwidth of the matching wgpu adapter.
fn gpu_profiles(llama_devices: &[LlamaDevice], adapters: &[ProbedAdapter]) -> Vec<GpuProfile> {
    llama_devices
        .iter()
        .filter(|device| {
            device.used && matches!(device.device_type.as_str(), "gpu" | "integrated_gpu")
        })
        .map(|device| {
            let probed = matching_adapter(device, adapters);
            let measurement = probed.and_then(|probed| probed.measurement.as_ref());
            let integrated = device.device_type == "integrated_gpu"
                || device.backend == "Metal"
                || probed.is_some_and(|probed| adapter_is_unified(&probed.adapter));
            GpuProfile {
                name: device.name.clone(),
                description: device.description.clone(),
                backend: device.backend.clone(),
                kind: if integrated {
                    GpuKind::Integrated
                } else {
                    GpuKind::Discrete
                },
                memory_total_bytes: device.memory_total_bytes,
                memory_free_bytes: device.memory_free_bytes,
                read_bandwidth_bytes_per_second: measurement
                    .map(|measurement| measurement.read_bytes_per_second),
                f32_flops_per_second: measurement
                    .map(|measurement| measurement.f32_flops_per_second),
            }
        })
        .collect()
}

/// Probes the machine. `llama_devices` is what the engine worker reported (the caller asks
/// it; this crate does not link llama.cpp).
pub fn probe(options: &ProbeOptions, llama_devices: Option<Vec<LlamaDevice>>) -> ProbeReport {
    let mut system = sysinfo::System::new();
    system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    let cpu_model = system
        .cpus()
        .first()
        .map(|cpu| cpu.brand().trim().to_string())
        .filter(|brand| !brand.is_empty())
        .unwrap_or_else(|| "unknown CPU".to_string());
    let logical_cores = u32::try_from(system.cpus().len())
        .unwrap_or(u32::MAX)
        .max(1);
    let physical_cores = sysinfo::System::physical_core_count()
        .and_then(|cores| u32::try_from(cores).ok())
        .unwrap_or(logical_cores)
        .max(1);

    let mut cache = MeasurementCache::load(&options.data_dir);
    let mut cache_changed = false;

    // CPU bandwidth, one thread per physical core (what the engine runs with). Other programs
    // can only slow a measurement down, never speed it up, so a new measurement keeps the
    // best of itself and the cached one.
    let cpu_key = format!("cpu:{cpu_model}:{physical_cores}:{logical_cores}");
    let cached_cpu = cache
        .current(&cpu_key)
        .and_then(|entry| entry.cpu_read_bytes_per_second);
    let (cpu_bandwidth, cpu_bandwidth_from_cache) = match cached_cpu {
        Some(cached) if !options.refresh => (Some(cached), true),
        _ if options.measure => {
            let measured = hearth_kernels::measure_cpu_read_bandwidth(
                physical_cores as usize,
                CPU_BANDWIDTH_BUFFER_BYTES,
                CPU_BANDWIDTH_PASSES,
            )
            .read_bytes_per_second
            .max(cached_cpu.unwrap_or(0.0));
            cache.entries.insert(
                cpu_key,
                CachedMeasurement {
                    probe_version: PROBE_VERSION,
                    measured_at: now_seconds(),
                    cpu_read_bytes_per_second: Some(measured),
                    gpu: None,
                },
            );
            cache_changed = true;
            (Some(measured), false)
        }
        cached => (cached, cached.is_some()),
    };

    // GPU adapters and their kernels.
    let adapters: Vec<ProbedAdapter> = hearth_kernels::list_adapters()
        .into_iter()
        .map(|adapter| {
            let key = adapter.cache_key();
            let cached = cache.current(&key).and_then(|entry| entry.gpu.clone());
            if let Some(gpu) = &cached {
                if !options.refresh || !options.measure {
                    return ProbedAdapter {
                        measurement: Some(gpu.clone()),
                        adapter,
                        measurement_error: None,
                        from_cache: true,
                    };
                }
            }
            if !options.measure {
                return ProbedAdapter {
                    adapter,
                    measurement: None,
                    measurement_error: Some("not measured (no cached figure)".to_string()),
                    from_cache: false,
                };
            }
            match hearth_kernels::measure_adapter(adapter.index) {
                Ok(mut measurement) => {
                    if let Some(cached) = &cached {
                        measurement.read_bytes_per_second = measurement
                            .read_bytes_per_second
                            .max(cached.read_bytes_per_second);
                        measurement.f32_flops_per_second = measurement
                            .f32_flops_per_second
                            .max(cached.f32_flops_per_second);
                    }
                    cache.entries.insert(
                        key,
                        CachedMeasurement {
                            probe_version: PROBE_VERSION,
                            measured_at: now_seconds(),
                            cpu_read_bytes_per_second: None,
                            gpu: Some(measurement.clone()),
                        },
                    );
                    cache_changed = true;
                    ProbedAdapter {
                        adapter,
                        measurement: Some(measurement),
                        measurement_error: None,
                        from_cache: false,
                    }
                }
                Err(error) => ProbedAdapter {
                    adapter,
                    measurement: None,
                    measurement_error: Some(error.to_string()),
                    from_cache: false,
                },
            }
        })
        .collect();
    if cache_changed {
        // A cache that cannot be written costs a measurement next time, nothing more.
        let _ = cache.save(&options.data_dir);
    }

    let gpus = gpu_profiles(llama_devices.as_deref().unwrap_or(&[]), &adapters);
    let unified_memory = !gpus.is_empty() && gpus.iter().all(|gpu| gpu.kind == GpuKind::Integrated);
    let models_disk_free_bytes = nearest_existing(&options.models_dir)
        .and_then(|directory| fs4::available_space(directory).ok());
    let profile = DeviceProfile {
        os: os_description(),
        cpu: CpuProfile {
            model: cpu_model,
            architecture: std::env::consts::ARCH.to_string(),
            physical_cores,
            logical_cores,
            features: cpu_features(),
            read_bandwidth_bytes_per_second: cpu_bandwidth,
        },
        memory: current_memory(),
        gpus,
        unified_memory,
        models_disk_free_bytes,
    };
    ProbeReport {
        probe_version: PROBE_VERSION,
        profile,
        adapters,
        llama_devices,
        backends: None,
        cpu_bandwidth_from_cache,
        cache_path: MeasurementCache::path(&options.data_dir),
    }
}

/// A profile for planning an offload right before a load, from llama.cpp's devices alone: the
/// memory and CPU now, the GPUs the engine will use (no wgpu, no kernel, no cache: the offload
/// depends on memory, not on measured speed). The engine worker plans `--gpu-layers auto` with it.
pub fn offload_profile(llama_devices: &[LlamaDevice]) -> DeviceProfile {
    let gpus = gpu_profiles(llama_devices, &[]);
    let unified_memory = !gpus.is_empty() && gpus.iter().all(|gpu| gpu.kind == GpuKind::Integrated);
    let mut system = sysinfo::System::new();
    system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    let logical_cores = u32::try_from(system.cpus().len().max(1)).unwrap_or(1);
    DeviceProfile {
        os: os_description(),
        cpu: CpuProfile {
            model: String::new(),
            architecture: std::env::consts::ARCH.to_string(),
            physical_cores: sysinfo::System::physical_core_count()
                .and_then(|cores| u32::try_from(cores).ok())
                .unwrap_or(logical_cores),
            logical_cores,
            features: cpu_features(),
            read_bandwidth_bytes_per_second: None,
        },
        memory: current_memory(),
        gpus,
        unified_memory,
        models_disk_free_bytes: None,
    }
}

/// System memory now: cheap (no kernel, no GPU), so a long-running program that remembers a
/// report can refresh this part of it on every use.
pub fn current_memory() -> MemoryProfile {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    MemoryProfile {
        total_bytes: system.total_memory(),
        available_bytes: system.available_memory(),
    }
}

/// `path` or its nearest existing ancestor (the models directory may not exist yet).
fn nearest_existing(path: &Path) -> Option<&Path> {
    path.ancestors().find(|ancestor| ancestor.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_cpu_has_features_and_cores() {
        hearth_supervisor::process::quiet_gpu_drivers();
        let directory = tempfile::tempdir().unwrap();
        let options = ProbeOptions {
            data_dir: directory.path().to_path_buf(),
            models_dir: directory.path().join("models/not-yet"),
            measure: false,
            refresh: false,
        };
        let report = probe(&options, None);
        assert!(report.profile.cpu.physical_cores >= 1);
        assert!(report.profile.cpu.logical_cores >= report.profile.cpu.physical_cores);
        assert!(report.profile.memory.total_bytes >= report.profile.memory.available_bytes);
        assert!(report.profile.models_disk_free_bytes.is_some());
        #[cfg(target_arch = "x86_64")]
        assert!(report.profile.cpu.has("sse4.2"));
        assert!(
            report.profile.gpus.is_empty(),
            "no llama.cpp devices were given"
        );
    }

    #[test]
    fn the_cache_round_trips_and_ignores_other_versions() {
        let directory = tempfile::tempdir().unwrap();
        let mut cache = MeasurementCache::default();
        let entry = CachedMeasurement {
            probe_version: PROBE_VERSION,
            measured_at: 1,
            cpu_read_bytes_per_second: Some(4.2e10),
            gpu: None,
        };
        cache.entries.insert("cpu:x".into(), entry.clone());
        cache.entries.insert(
            "cpu:old".into(),
            CachedMeasurement {
                probe_version: PROBE_VERSION + 1,
                ..entry
            },
        );
        cache.save(directory.path()).unwrap();
        let loaded = MeasurementCache::load(directory.path());
        assert_eq!(loaded, cache);
        assert!(loaded.current("cpu:x").is_some());
        assert!(loaded.current("cpu:old").is_none());
        std::fs::write(MeasurementCache::path(directory.path()), b"not json").unwrap();
        assert_eq!(
            MeasurementCache::load(directory.path()),
            MeasurementCache::default()
        );
    }

    #[test]
    fn llama_gpus_become_planner_gpus_with_their_adapter_bandwidth() {
        let devices = vec![
            LlamaDevice {
                name: "CPU".into(),
                description: "AMD Ryzen".into(),
                backend: "CPU".into(),
                device_type: "cpu".into(),
                memory_total_bytes: 0,
                memory_free_bytes: 0,
                device_id: None,
                used: true,
            },
            LlamaDevice {
                name: "CUDA0".into(),
                description: "NVIDIA GeForce RTX 4090".into(),
                backend: "CUDA".into(),
                device_type: "gpu".into(),
                memory_total_bytes: 24 << 30,
                memory_free_bytes: 23 << 30,
                device_id: None,
                used: true,
            },
        ];
        let adapters = vec![ProbedAdapter {
            adapter: GpuAdapterInfo {
                index: 0,
                name: "NVIDIA GeForce RTX 4090".into(),
                vendor_id: 0x10de,
                vendor: "NVIDIA".into(),
                device_id: 0x2684,
                backend: "Vulkan".into(),
                device_type: GpuDeviceType::DiscreteGpu,
                driver: "NVIDIA".into(),
                driver_info: "550".into(),
                max_storage_buffer_binding_bytes: 1 << 31,
            },
            measurement: Some(GpuMeasurement {
                read_bytes_per_second: 9e11,
                f32_flops_per_second: 8e13,
                read_buffer_bytes: 1 << 28,
            }),
            measurement_error: None,
            from_cache: false,
        }];
        let gpus = gpu_profiles(&devices, &adapters);
        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].name, "CUDA0");
        assert_eq!(gpus[0].kind, GpuKind::Discrete);
        assert_eq!(gpus[0].read_bandwidth_bytes_per_second, Some(9e11));
    }
}
