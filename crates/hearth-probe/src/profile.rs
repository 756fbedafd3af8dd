//! The device profile: everything the planner knows about a machine. The probe fills one in
//! from the real machine; tests build fixture profiles by hand.

use serde::{Deserialize, Serialize};

pub const GIB: u64 = 1024 * 1024 * 1024;
pub const MIB: u64 = 1024 * 1024;

/// The machine as the planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// `linux`, `macos`, `windows`, with the version when known.
    pub os: String,
    pub cpu: CpuProfile,
    pub memory: MemoryProfile,
    /// The accelerators llama.cpp can put layers on, in llama.cpp's device order.
    pub gpus: Vec<GpuProfile>,
    /// Whether the GPU shares the system's memory (Apple Silicon, integrated GPUs): then GPU
    /// and host allocations come out of one budget.
    pub unified_memory: bool,
    /// Free bytes on the disk that holds the models directory.
    pub models_disk_free_bytes: Option<u64>,
}

/// The CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuProfile {
    pub model: String,
    /// `x86_64`, `aarch64`, ...
    pub architecture: String,
    pub physical_cores: u32,
    pub logical_cores: u32,
    /// SIMD and matrix features by their usual names (`avx2`, `avx512f`, `neon`, `dotprod`,
    /// `i8mm`, ...). llama.cpp's CPU kernels (and its weight repacking) depend on them.
    pub features: Vec<String>,
    /// Measured read bandwidth with one thread per physical core, bytes per second.
    pub read_bandwidth_bytes_per_second: Option<f64>,
}

impl CpuProfile {
    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|known| known == feature)
    }
}

/// System memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryProfile {
    pub total_bytes: u64,
    /// What the OS says can be allocated without swapping (free plus reclaimable cache).
    pub available_bytes: u64,
}

/// How a GPU's memory relates to the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuKind {
    /// Its own memory (VRAM).
    Discrete,
    /// Shares system memory (Apple Silicon, integrated GPUs).
    Integrated,
}

/// One accelerator llama.cpp can use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuProfile {
    /// llama.cpp's device name (`CUDA0`, `Metal`, `Vulkan0`), or the adapter name when
    /// llama.cpp was not asked.
    pub name: String,
    /// The adapter's description (`NVIDIA GeForce RTX 4090`).
    pub description: String,
    /// `CUDA`, `Metal`, `Vulkan`, ...
    pub backend: String,
    pub kind: GpuKind,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// Measured streaming-read bandwidth, bytes per second.
    pub read_bandwidth_bytes_per_second: Option<f64>,
    /// Measured f32 FMA throughput, operations per second.
    pub f32_flops_per_second: Option<f64>,
}

impl DeviceProfile {
    /// Physical cores, at least 1.
    pub fn threads(&self) -> u32 {
        self.cpu.physical_cores.max(1)
    }
}

/// Fixture profiles for tests and documentation: typical machines, with bandwidths from their
/// vendors' figures scaled to what streaming reads reach (about 80-90%).
pub mod fixtures {
    use super::*;

    fn cpu(model: &str, cores: u32, features: &[&str], bandwidth_gb_s: f64) -> CpuProfile {
        CpuProfile {
            model: model.to_string(),
            architecture: if features.contains(&"neon") {
                "aarch64".to_string()
            } else {
                "x86_64".to_string()
            },
            physical_cores: cores,
            logical_cores: cores * 2,
            features: features.iter().map(|feature| feature.to_string()).collect(),
            read_bandwidth_bytes_per_second: Some(bandwidth_gb_s * 1e9),
        }
    }

    fn nvidia(name: &str, total_gib: u64, free_gib: f64, bandwidth_gb_s: f64) -> GpuProfile {
        GpuProfile {
            name: name.to_string(),
            description: name.to_string(),
            backend: "CUDA".to_string(),
            kind: GpuKind::Discrete,
            memory_total_bytes: total_gib * GIB,
            memory_free_bytes: (free_gib * GIB as f64) as u64,
            read_bandwidth_bytes_per_second: Some(bandwidth_gb_s * 1e9),
            f32_flops_per_second: Some(20e12),
        }
    }

    fn desktop(gpus: Vec<GpuProfile>, ram_gib: u64) -> DeviceProfile {
        DeviceProfile {
            os: "linux".to_string(),
            cpu: cpu("Desktop CPU", 8, &["avx", "avx2", "fma", "f16c"], 60.0),
            memory: MemoryProfile {
                total_bytes: ram_gib * GIB,
                available_bytes: ram_gib * GIB * 3 / 4,
            },
            gpus,
            unified_memory: false,
            models_disk_free_bytes: Some(200 * GIB),
        }
    }

    /// An 8 GB laptop without a usable GPU: 4 cores, dual-channel DDR4.
    pub fn laptop_8gb_no_gpu() -> DeviceProfile {
        DeviceProfile {
            os: "linux".to_string(),
            cpu: cpu("Laptop CPU", 4, &["avx", "avx2", "fma", "f16c"], 25.0),
            memory: MemoryProfile {
                total_bytes: 8 * GIB,
                available_bytes: 5 * GIB,
            },
            gpus: Vec::new(),
            unified_memory: false,
            models_disk_free_bytes: Some(50 * GIB),
        }
    }

    /// A 16 GB Apple Silicon laptop (M2 class): Metal may use about 2/3 of the memory.
    pub fn apple_16gb_unified() -> DeviceProfile {
        DeviceProfile {
            os: "macos".to_string(),
            cpu: cpu("Apple M2", 8, &["neon", "dotprod", "fp16"], 90.0),
            memory: MemoryProfile {
                total_bytes: 16 * GIB,
                available_bytes: 10 * GIB,
            },
            gpus: vec![GpuProfile {
                name: "Metal".to_string(),
                description: "Apple M2".to_string(),
                backend: "Metal".to_string(),
                kind: GpuKind::Integrated,
                memory_total_bytes: 16 * GIB,
                // Metal's recommended working set on a 16 GB machine.
                memory_free_bytes: 10_922 * MIB,
                read_bandwidth_bytes_per_second: Some(90e9),
                f32_flops_per_second: Some(3.6e12),
            }],
            unified_memory: true,
            models_disk_free_bytes: Some(100 * GIB),
        }
    }

    /// An RTX 3060 Laptop GPU class card: 6 GB, about 5.5 free.
    pub fn nvidia_6gb() -> DeviceProfile {
        desktop(vec![nvidia("CUDA0", 6, 5.5, 300.0)], 16)
    }

    /// An RTX 3060 / 4070 class card: 12 GB, about 11.2 free.
    pub fn nvidia_12gb() -> DeviceProfile {
        desktop(vec![nvidia("CUDA0", 12, 11.2, 400.0)], 32)
    }

    /// An RTX 3090 / 4090 class card: 24 GB, about 23 free.
    pub fn nvidia_24gb() -> DeviceProfile {
        desktop(vec![nvidia("CUDA0", 24, 23.0, 850.0)], 64)
    }

    /// Two GPUs of different sizes (a 12 GB and an 8 GB card).
    pub fn two_gpus() -> DeviceProfile {
        desktop(
            vec![
                nvidia("CUDA0", 12, 11.2, 400.0),
                nvidia("CUDA1", 8, 7.4, 380.0),
            ],
            32,
        )
    }

    /// Every fixture, named.
    pub fn all() -> Vec<(&'static str, DeviceProfile)> {
        vec![
            ("laptop_8gb_no_gpu", laptop_8gb_no_gpu()),
            ("apple_16gb_unified", apple_16gb_unified()),
            ("nvidia_6gb", nvidia_6gb()),
            ("nvidia_12gb", nvidia_12gb()),
            ("nvidia_24gb", nvidia_24gb()),
            ("two_gpus", two_gpus()),
        ]
    }
}
