//! Measurement kernels for Hearth's fit planner.
//!
//! Token generation is bound by memory bandwidth: every token reads all active weights once.
//! A spec sheet's peak bandwidth is not what a laptop delivers (power limits, memory
//! configuration, drivers), so the planner predicts speed from bandwidth measured here:
//! [`measure_cpu_read_bandwidth`] streams a buffer far larger than any cache with one thread per
//! core, and on every GPU adapter that `wgpu` finds (Vulkan, Metal, DX12) [`measure_adapter`]
//! runs two WGSL compute kernels: a streaming read (bandwidth) and chains of f32 fused
//! multiply-adds (arithmetic throughput, which bounds prompt processing). Mesa's lavapipe, a
//! Vulkan device on the CPU, runs them too, which is how CI exercises the GPU path.
//!
//! This crate only measures; caching the results per device lives in `hearth-probe`.

mod cpu;
mod gpu;

pub use cpu::{
    measure_cpu_read_bandwidth, CpuBandwidthMeasurement, DEFAULT_CPU_BUFFER_BYTES,
    DEFAULT_CPU_PASSES,
};
pub use gpu::{
    list_adapters, measure_adapter, vendor_name, GpuAdapterInfo, GpuDeviceType, GpuMeasurement,
    TARGET_BATCH_SECONDS,
};

/// Why a GPU measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no GPU adapter with index {index}")]
    NoSuchAdapter { index: usize },
    #[error("{adapter}: cannot run the kernels: {reason}")]
    Unsupported { adapter: String, reason: String },
    #[error("{adapter}: {reason}")]
    Device { adapter: String, reason: String },
}
